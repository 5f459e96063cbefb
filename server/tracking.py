"""Experiment tracking: a finished run folder, logged to MLflow.

Why from the run folder and not from inside the ServerApp: the folder (run-config.json,
metrics.json, privacy.json, report, plots, model) is the run's record in every entry point,
`medfed simulate` and `medfed server run` alike, so one function logs both, with exactly the
numbers the report shows. The tracking store is checked before the run starts (`check_store`),
so an unwritable URI stops the run before any hospital trains.

MLflow is optional (`pip install 'medfed[mlflow]'`) and imported only here, only when asked.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common.errors import ConfigError

URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_STORE = Path("runs") / "mlruns"
EXPERIMENT = "medfed"
ARTIFACTS = (
    "report.html", "metrics.json", "metrics.csv", "privacy.json", "events.log", "run-config.json",
    "global_model.pt", "global_model.json", "learning_curves.png", "roc_curve.png", "epsilon_per_site.png",
)
_MAX_PARAM = 6000  # MLflow's limit for one parameter value


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs are logged: a tracking URI (file store folder or server URL) and an experiment."""

    uri: str
    experiment: str = EXPERIMENT


def tracking_target(enabled: bool, uri: str | None = None, experiment: str = EXPERIMENT) -> TrackingTarget | None:
    """--mlflow, or a URI (option or MLFLOW_TRACKING_URI), turns tracking on; default store: a
    local folder (runs/mlruns), no server needed."""
    uri = uri or os.environ.get(URI_ENV) or None
    if not enabled and uri is None:
        return None
    if uri is None:
        uri = DEFAULT_STORE.resolve().as_uri()
    elif "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()  # a plain folder
    return TrackingTarget(uri=uri, experiment=experiment)


def _client(target: TrackingTarget) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise ConfigError(
            "MLflow tracking was asked for (--mlflow or MLFLOW_TRACKING_URI) but MLflow is not installed.",
            "pip install 'medfed[mlflow]', or drop --mlflow / unset MLFLOW_TRACKING_URI.",
        ) from err
    if target.uri.startswith("file:"):
        # MLflow 3 keeps its folder store in maintenance mode behind this switch; it is still the
        # store that needs no server (and `mlflow migrate-filestore` moves it to a database).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        return MlflowClient(tracking_uri=target.uri)
    except Exception as err:  # the folder store is opened here
        raise _fail(target, err) from err


def _fail(target: TrackingTarget, err: BaseException) -> ConfigError:
    return ConfigError(
        f"Cannot write to the MLflow tracking store {target.uri}: {type(err).__name__}: {err}",
        "pass a writable folder or a reachable tracking server with --mlflow-uri (or MLFLOW_TRACKING_URI), "
        "or drop --mlflow.",
    )


def check_store(target: TrackingTarget) -> str:
    """Make sure runs can be logged (the experiment exists or is created); return its id.
    Called before the run starts."""
    if target.uri.startswith("file:"):
        folder = Path(urlparse(target.uri).path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _fail(target, err) from err
        if not os.access(folder, os.W_OK):
            raise _fail(target, PermissionError(f"{folder} is not writable"))
    client = _client(target)
    try:
        found = client.get_experiment_by_name(target.experiment)
        return found.experiment_id if found is not None else client.create_experiment(target.experiment)
    except Exception as err:  # MlflowException, connection errors, permission errors
        raise _fail(target, err) from err


def _key(*parts: str) -> str:
    """An MLflow metric name: letters, digits and _ - . / space only."""
    return "/".join(re.sub(r"[^\w\-. ]", "_", p) for p in parts)


def _params(run_config: dict) -> list[tuple[str, str]]:
    return [(k, str(v)[:_MAX_PARAM]) for k, v in sorted(run_config.items())]


def _metrics(metrics: dict, privacy: dict) -> list[tuple[str, float, int]]:
    """(name, value, round) for every number of metrics.json and privacy.json's epsilon."""
    out: list[tuple[str, float, int]] = []
    for record in metrics.get("rounds", []):
        rnd = int(record["round"])
        for scope in ("global", "federated"):
            for name, value in (record.get(scope) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.append((_key(scope, name), float(value), rnd))
        for site, values in (record.get("sites") or {}).items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "epsilon":
                    out.append((_key("site", site, name), float(value), rnd))
    for site, entry in (privacy.get("sites") or {}).items():
        for rnd, eps in (entry.get("epsilon") or {}).items():
            if eps is not None:
                out.append((_key("epsilon", site), float(eps), int(rnd)))
    return out


def log_run_folder(out_dir: Path, target: TrackingTarget, *, run_name: str | None = None) -> str:
    """Log a finished run folder as one MLflow run; return the MLflow run id."""
    from mlflow.entities import Metric, Param, RunTag

    out_dir = Path(out_dir)
    client = _client(target)
    experiment_id = check_store(target)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    privacy = json.loads((out_dir / "privacy.json").read_text())
    config_path = out_dir / "run-config.json"
    run_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    name = run_name or run_config.get("run-name") or out_dir.name
    tags = [RunTag("medfed.run_folder", str(out_dir.resolve())), RunTag("medfed.privacy_mode", str(privacy.get("privacy_mode")))]
    try:
        run = client.create_run(experiment_id, run_name=name, tags={t.key: t.value for t in tags})
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in _params(run_config)]
        values = [Metric(k, v, now, step) for k, v, step in _metrics(metrics, privacy)]
        for i in range(0, max(len(params), 1), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[i : i + 100])
        for i in range(0, len(values), 1000):
            client.log_batch(run_id, metrics=values[i : i + 1000])
        for file in ARTIFACTS:
            if (out_dir / file).exists():
                client.log_artifact(run_id, str(out_dir / file))
        client.set_terminated(run_id)
    except Exception as err:
        raise _fail(target, err) from err
    return run_id
