"""`medfed server start|run`: the operator's commands on the federation server."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from simulations.cli.support import user_errors, warn
from server.deploy.settings import load_server_settings

server_cli = typer.Typer(
    help="The federation server: start the Flower SuperLink, submit and follow runs.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path, typer.Option("--config", help="server.toml (see deploy/examples/server.toml).", show_default=False)
]


@server_cli.command("start")
@user_errors
def start_cmd(
    config: ConfigOpt,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="No TLS and no node authentication. Throw-away trials only.")
    ] = False,
) -> None:
    """Start the SuperLink (TLS, node auth, database), register the hospitals' keys; run until SIGTERM."""
    from server.deploy.superlink import serve

    settings = load_server_settings(config, insecure=insecure)
    for message in settings.warnings:
        warn(message)
    raise typer.Exit(serve(settings))


@server_cli.command("run")
@user_errors
def run_cmd(
    config: ConfigOpt,
    name: Annotated[
        Optional[str],
        typer.Option("--name", help="Run name: output folder state-dir/runs/NAME and the hospitals' privacy scope "
                     "(default: run-<timestamp>). The same name resumes an interrupted run."),
    ] = None,
    run_config: Annotated[
        Optional[list[str]],
        typer.Option("--run-config", help="Override \\[run] settings: \"num-rounds=3 epsilon=4.0\" (TOML values)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Stop the run (flwr stop) if not finished after this many seconds; 0 = wait.")
    ] = 0.0,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Reach a SuperLink started with --insecure (no TLS).")
    ] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Log the finished run to MLflow (default store: runs/mlruns; needs medfed[mlflow]).")
    ] = False,
    mlflow_uri: Annotated[
        Optional[str], typer.Option(help="MLflow tracking URI: a folder or a server URL (or MLFLOW_TRACKING_URI); implies --mlflow.")
    ] = None,
) -> None:
    """Submit the run described in \\[run] (plus overrides) and follow it round by round."""
    from server.deploy.superlink import connect_cli
    from server.deploy.run_follower import RunFollower, describe_outputs, failure, final_summary
    from server.deploy.submit import (
        app_defaults,
        build_run_config,
        check_reachable,
        check_run_name,
        choose_out_dir,
        default_run_name,
        parse_overrides,
        stage_app,
        submit,
    )

    from server.tracking import check_store, log_run_folder, tracking_target

    tracking = tracking_target(mlflow, mlflow_uri)
    if tracking is not None:
        check_store(tracking)  # before the run is submitted, so no hospital trains for nothing
    settings = load_server_settings(config, insecure=insecure, check_files=False)
    for message in settings.warnings:
        warn(message)
    run_name = check_run_name(name or default_run_name())
    overrides = parse_overrides(run_config or [])
    out_dir, note = choose_out_dir(settings.runs_dir, run_name)
    if note:
        typer.echo(f"note: {note}")
    check_reachable(settings)
    env = connect_cli(settings)
    with tempfile.TemporaryDirectory(prefix="medfed-app-") as tmp:
        stage = stage_app(Path(tmp))
        sent, cfg = build_run_config(
            settings, name=run_name, out_dir=out_dir, overrides=overrides, defaults=app_defaults(stage)
        )
        run_id = submit(stage, sent, env)
    typer.echo(f"run {run_id} submitted: name {run_name}, {cfg.federation.num_rounds} round(s), outputs in {out_dir}")
    follower = RunFollower(run_id=run_id, out_dir=out_dir, env=env, num_rounds=cfg.federation.num_rounds, echo=typer.echo,
                            run_name=run_name)
    try:
        outcome = follower.follow(timeout=timeout or None)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; run {run_id} goes on. Stop it with: "
                   f"FLWR_HOME={settings.flwr_home} flwr stop {run_id} medfed", err=True)
        raise typer.Exit(130) from None
    if not outcome.completed:
        raise failure(outcome, env)
    for line in final_summary(outcome):
        typer.echo(line)
    typer.echo(f"run {run_id} finished:completed; outputs:")
    for line in describe_outputs(out_dir):
        typer.echo(line)
    if tracking is not None:
        mlflow_run = log_run_folder(out_dir, tracking, run_name=run_name)
        typer.echo(f"mlflow: run {mlflow_run} (experiment {tracking.experiment}) in {tracking.uri}")
