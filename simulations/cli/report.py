"""`medfed report RUN_DIR [RUN_DIR...]`: rebuild a run's report, or compare runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from simulations.cli.support import user_errors


@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (each holds metrics.json and privacy.json).")],
    out: Annotated[Optional[Path], typer.Option(help="Comparison page to write (two or more folders; default: comparison.html here).")] = None,
) -> None:
    """One folder: regenerate its report.html. Two or more: a side-by-side comparison page
    (settings that differ, metrics with intervals, epsilon per hospital)."""
    from server.run_folder import read_run_folder, regenerate_report

    if len(run_dirs) == 1:
        if out is not None:
            raise typer.BadParameter("--out is for a comparison of two or more folders; one folder's report is RUN_DIR/report.html.")
        typer.echo(f"report: {regenerate_report(run_dirs[0])}")
        return
    from server.compare_report import write_comparison

    runs = [read_run_folder(d) for d in run_dirs]  # every folder checked before anything is written
    typer.echo(f"comparison: {write_comparison(runs, out or Path('comparison.html'))}")
