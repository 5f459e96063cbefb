"""`medfed client start|status`: the hospital daemon and its status, for the site's IT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from simulations.cli.support import user_errors, warn

client_cli = typer.Typer(
    help="The hospital client: a Flower SuperNode next to the site's data, and its status.",
    no_args_is_help=True,
)

SiteConfigOpt = Annotated[
    Path, typer.Option("--site-config", help="site.toml (see deploy/examples/site.toml).", show_default=False)
]


@client_cli.command("start")
@user_errors
def start_cmd(
    site_config: SiteConfigOpt,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="No TLS and no node authentication. Throw-away trials only.")
    ] = False,
) -> None:
    """Check config, key and data, then run the SuperNode (reconnecting with backoff) until SIGTERM."""
    from client.daemon.supervisor import run_daemon
    from client.daemon.site_config import load_site_config

    config = load_site_config(site_config, insecure=insecure)
    for message in config.warnings:
        warn(message)
    raise typer.Exit(run_daemon(config))


@client_cli.command("status")
@user_errors
def status_cmd(
    site_config: SiteConfigOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Is the daemon running, is it connected, and how much privacy budget has each run spent."""
    from client.daemon.site_config import load_site_config
    from client.daemon.status import collect_status, render

    config = load_site_config(site_config, check_files=False)
    status = collect_status(config)
    if json_out:
        typer.echo(json.dumps(status, indent=2))
    else:
        for line in render(status):
            typer.echo(line)
