"""`medfed simulate`: a whole private federation of hospitals on one machine.

Wires the three packages together: the run configuration (common), the ClientApp (client) and
the ServerApp (server), run by Flower's simulation engine (Ray), with a live progress display.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from common.config import NON_PRIVATE_LEARNING_RATE, RunConfig
from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.selection import load_run_dataset
from common.errors import ConfigError


@dataclasses.dataclass
class SimulationResult:
    out_dir: Path
    metrics: dict
    privacy: dict
    seconds: float


def default_partition(dataset: str, data_path: str) -> str:
    if data_path or dataset not in BUILTIN_DATASETS:
        return "iid"  # an unknown dataset is reported by the config validation that follows
    return BUILTIN_DATASETS.get(dataset).info.default_partition


def build_config(base: RunConfig | None = None, **changes: Any) -> RunConfig:
    """A validated RunConfig from defaults plus command-line changes (None = keep default).

    A non-private run (`privacy.mode` "none") that leaves the learning rate unset gets
    NON_PRIVATE_LEARNING_RATE: the default is tuned for clipped DP-SGD gradients."""
    cfg = base or RunConfig()
    if changes.get("privacy.mode") == "none" and changes.get("training.learning_rate") is None:
        changes = {**changes, "training.learning_rate": NON_PRIVATE_LEARNING_RATE}
    sections: dict[str, dict[str, Any]] = {"data": {}, "training": {}, "privacy": {}, "secagg": {}, "federation": {}}
    top: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        section, _, attr = key.partition(".")
        if attr:
            sections[section][attr] = value
        else:
            top[key] = value
    replaced = {name: dataclasses.replace(getattr(cfg, name), **vals) for name, vals in sections.items() if vals}
    return dataclasses.replace(cfg, **replaced, **top).validate()


def new_out_dir(root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = root / f"sim-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"sim-{stamp}-{n}"
    return out


def backend_config(num_sites: int, *, verbose: bool = False) -> dict:
    """Ray resources: one CPU per virtual hospital (so hospitals run in parallel on every core),
    and a fraction of the GPU each when there is one."""
    import torch

    cpus = os.cpu_count() or 1
    resources: dict[str, float] = {"num_cpus": 1, "num_gpus": 0.0}
    if torch.cuda.is_available():
        resources["num_gpus"] = round(1.0 / min(num_sites, max(cpus, 1)), 3)
    return {
        "client_resources": resources,
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": verbose},
    }


def run(cfg: RunConfig, *, data_dir: str | None = None, display: Any = None, verbose: bool = False) -> SimulationResult:
    """Run the federation described by `cfg` (its out_dir must be set) and return its records."""
    from flwr.simulation import run_simulation

    from client.client_app import make_client_app
    from server import run_setup
    from server.server_app import make_server_app

    if data_dir:
        os.environ["MEDFED_DATA_DIR"] = str(Path(data_dir).resolve())  # Ray workers inherit it
    if not cfg.out_dir:
        raise ConfigError("No output folder set for the simulation.", "pass --out DIR.")
    out_dir = Path(cfg.out_dir)
    if (out_dir / "global_model.pt").exists():
        raise ConfigError(f"{out_dir} already holds a finished run.", "choose another --out folder.")
    dataset = load_run_dataset(cfg.data)  # fail early, before Ray starts, on bad data
    num_sites = len(dataset.sites)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    flower_logger = logging.getLogger("flwr")
    previous_level = flower_logger.level
    if not verbose:
        flower_logger.setLevel(logging.WARNING)
    if display is not None:
        run_setup.PROGRESS_LISTENERS.append(display)
    started = time.monotonic()
    try:
        run_simulation(
            server_app=make_server_app(cfg.to_flower()),
            client_app=make_client_app(cfg.to_flower()),
            num_supernodes=num_sites,
            backend_config=backend_config(num_sites, verbose=verbose),
            verbose_logging=verbose,
        )
    finally:
        flower_logger.setLevel(previous_level)
        if display is not None:
            run_setup.PROGRESS_LISTENERS.remove(display)
    seconds = time.monotonic() - started
    metrics_path = out_dir / "metrics.json"
    if not (out_dir / "report.html").exists():
        raise ConfigError(
            f"The simulation ended without writing its report to {out_dir}.",
            "see the log above (run again with --verbose for Flower's own log).",
        )
    return SimulationResult(
        out_dir=out_dir,
        metrics=json.loads(metrics_path.read_text()),
        privacy=json.loads((out_dir / "privacy.json").read_text()),
        seconds=seconds,
    )
