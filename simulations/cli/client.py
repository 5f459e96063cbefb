"""`medfed client start|status|audit`: the hospital daemon, its status and its audit log, for the site's IT."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

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


@client_cli.command("audit")
@user_errors
def audit_cmd(
    site_config: SiteConfigOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print {path, verdict, records} as JSON.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Only check the hash chain and its head: exit 0 when intact, 3 when not.")
    ] = False,
) -> None:
    """Every request this site answered: what left, what was refused and why, and the epsilon spent.

    The log is read, never written: safe while the daemon runs. A broken chain (an edited, removed,
    reordered or cut-off record) is named by its seq and line; with --verify it exits 3 (DataError).
    """
    from client.daemon.site_config import load_site_config
    from client.privacy.audit import AuditLog

    log = AuditLog(load_site_config(site_config, check_files=False).audit_log_path)
    if verify:
        verdict = log.verify()
        if json_out:
            typer.echo(json.dumps({"path": str(log.path), "verdict": asdict(verdict)}, indent=2))
        verdict.raise_if_broken()
        if not json_out:
            typer.echo(f"audit log {log.path}: intact, {verdict.count} record(s)")
        return
    records, verdict = log.records(), log.verify()
    if json_out:
        typer.echo(json.dumps({"path": str(log.path), "verdict": asdict(verdict), "records": records}, indent=2))
    else:
        for line in _audit_table(records) if records else [f"no audit records yet in {log.path}"]:
            typer.echo(line)
    if not verdict.ok:
        warn(f"the audit log {log.path} fails verification: {verdict.problem} "
             "Run `medfed client audit --verify` and restore the log from backup.")


def _audit_table(records: list[dict[str, Any]]) -> list[str]:
    """One line per record: seq, time (to the second), run, round, type, decision, epsilon after, released."""
    def eps(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [("seq", "time (UTC)", "run", "round", "type", "decision", "eps run", "eps total", "released", "reason")]
    for r in records:
        released = r["released"]
        what = f"{'+'.join(released['items'])} ({released['bytes']} B)" if released["items"] else "nothing"
        rows.append((str(r["seq"]), str(r["time"])[:19], str(r["run"]), "-" if r["round"] is None else str(r["round"]),
                     str(r["message_type"]), str(r["decision"]), eps(r["epsilon_run_after"]),
                     eps(r["epsilon_total_after"]), what, str(r["reason"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]).rstrip() for row in rows]
