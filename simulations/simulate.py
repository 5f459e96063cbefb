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
from typing import Any, Mapping, Sequence

from common.config import RunConfig
from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.selection import load_run_dataset
from common.errors import ConfigError
from server.records import Listener
from server.strategies import check_strategy
from simulations.ray_engine import EngineSettings


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


def build_config(changes: Mapping[str, Any]) -> RunConfig:
    """A validated RunConfig from the defaults plus `changes`, in Flower's kebab-case keys (the
    keys of pyproject.toml [tool.flwr.app.config], e.g. {"num-sites": 4}); a None value keeps the
    default. The same keys and the same RunConfig.from_flower as `flwr run .`, so a simulation
    resolves every setting (the automatic learning rate included) as a deployed run does."""
    cfg = RunConfig.from_flower(RunConfig().to_flower() | {k: v for k, v in changes.items() if v is not None})
    check_strategy(cfg.federation.strategy)
    return cfg


def new_out_dir(root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = root / f"sim-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"sim-{stamp}-{n}"
    return out


def backend_config(num_sites: int, *, verbose: bool = False) -> dict:
    """Flower's backend config for code that calls `run_simulation` itself (tests, benchmarks):
    one CPU per virtual hospital, a share of the GPU when there is one, and Ray on loopback only
    (simulations/ray_engine.py says why). `run` below starts Ray itself instead."""
    from simulations.ray_engine import LOOPBACK, EngineSettings, client_resources, keep_ray_on_loopback

    keep_ray_on_loopback()
    return {
        "client_resources": client_resources(EngineSettings(), num_sites),
        "init_args": {
            "num_cpus": os.cpu_count() or 1,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": verbose,
            "_node_ip_address": LOOPBACK,
        },
    }


def seed_driver(seed: int) -> None:
    """Seed this process's generators: the ServerApp runs here, and Flower's client sampling
    (`random`) and server-side DP noise (numpy) draw from them. The sites seed their own work
    (client/reproducibility.py)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(
    cfg: RunConfig,
    *,
    data_dir: str | None = None,
    display: Listener | None = None,
    verbose: bool = False,
    engine: EngineSettings | None = None,
    listeners: Sequence[Listener] = (),
) -> SimulationResult:
    """Run the federation described by `cfg` (its out_dir must be set) and return its records.

    `display` and `listeners` get the run's progress events (the ServerApp runs in this
    process); `engine` says where the virtual hospitals run (default: a private Ray on this
    machine, loopback only). Flower's and Ray's notices go to engine.log in the run folder, and
    to the console too with `verbose`."""
    from flwr.simulation import run_simulation

    from client.client_app import make_client_app
    from server.server_app import make_server_app
    from simulations import ray_engine
    from simulations.engine_log import engine_log

    engine = engine or EngineSettings()
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
    seed_driver(cfg.data.seed)
    every = [*([display] if display is not None else []), *listeners]
    with engine_log(out_dir, verbose=verbose):
        backend = ray_engine.start(engine, num_sites, verbose=verbose)  # checks before any site trains
        started = time.monotonic()
        try:
            run_simulation(
                server_app=make_server_app(cfg.to_flower(), listeners=every),
                client_app=make_client_app(cfg.to_flower()),
                num_supernodes=num_sites,
                backend_config=backend,
                verbose_logging=verbose,
            )
        finally:
            ray_engine.stop()
        seconds = time.monotonic() - started
    metrics_path = out_dir / "metrics.json"
    if not (out_dir / "report.html").exists():
        raise ConfigError(
            f"The simulation ended without writing its report to {out_dir}.",
            f"see the log above and {out_dir / 'engine.log'} (run again with --verbose for Flower's own log).",
        )
    return SimulationResult(
        out_dir=out_dir,
        metrics=json.loads(metrics_path.read_text()),
        privacy=json.loads((out_dir / "privacy.json").read_text()),
        seconds=seconds,
    )
