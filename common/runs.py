"""Run identity shared by the server and the sites: a stable name and the output folder."""

from __future__ import annotations

from pathlib import Path

from common.config import RunConfig


def run_name(cfg: RunConfig, run_id: int) -> str:
    """The run's stable name: `run-name`, else the output folder's name, else Flower's run id.

    Privacy ledgers and checkpoints are keyed by it, so a restarted run must keep its name."""
    if cfg.run_name:
        return cfg.run_name
    if cfg.out_dir:
        return Path(cfg.out_dir).name
    return f"flwr-run-{run_id}"


def run_out_dir(cfg: RunConfig, run_id: int) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir else Path("runs") / run_name(cfg, run_id)
