"""The end of a run: final global model with its metadata, plots and the HTML report."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_write_json
from common.models import count_parameters, set_weights
from server.report import write_plots, write_report
from common.synthesis.setup import is_synthesis
from server.run_setup import RunSetup
from server.synthesis_outputs import write_synthetic

MODEL_FILE = "global_model.pt"
MODEL_META_FILE = "global_model.json"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("flwr", "torch", "opacus", "numpy", "cryptography"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _final_operating_point(setup: RunSetup) -> dict:
    """The last round's operating point (rounds that missed their quorum record none)."""
    for rnd in sorted(setup.recorder.rounds, reverse=True):
        point = setup.recorder.rounds[rnd].get("operating_point")
        if point:
            return dict(point)
    return setup.operating_point.current.to_dict()


def write_final_outputs(setup: RunSetup, weights: list[np.ndarray] | None) -> dict[str, Path]:
    out_dir = setup.out_dir
    if weights is not None:
        set_weights(setup.model, weights)
    last_round = max(setup.recorder.rounds) if setup.recorder.rounds else 0
    point = _final_operating_point(setup)
    meta = {
        "model": setup.model_name,
        "num_parameters": count_parameters(setup.model),
        "input_shape": list(setup.dataset.input_shape),
        "num_classes": setup.dataset.num_classes,
        "class_names": setup.dataset.class_names,
        "round": last_round,
        # How to turn the model's logits into decisions: divide by the temperature, softmax, and
        # (binary) call class 1 when its probability >= threshold. Chosen on validation data only.
        "operating_point": point,
        "threshold": point.get("threshold"),
        "threshold_rule": point.get("rule"),
        "temperature": point.get("temperature", 1.0),
        "dataset": setup.dataset.name,
        "dataset_checksums": setup.dataset.checksums,
        "privacy_mode": setup.cfg.privacy.mode,
        "secure_aggregation": setup.secagg.to_dict() if setup.secagg else {"enabled": False},
        "library_versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": setup.cfg.to_dict(),
    }
    torch.save(setup.model.state_dict(), out_dir / MODEL_FILE)
    atomic_write_json(out_dir / MODEL_META_FILE, meta)
    setup.recorder.write()
    metrics, privacy = setup.recorder.metrics_document(), setup.recorder.privacy_document()
    plots = write_plots(out_dir, metrics, privacy, setup.recorder.final_roc)
    report = write_report(out_dir, metrics, privacy, plots, meta)
    files = {"model": out_dir / MODEL_FILE, "model_meta": out_dir / MODEL_META_FILE, "report": report, **plots}
    if is_synthesis(setup.cfg):
        files.update(write_synthetic(setup, privacy, meta))
    setup.recorder.finished(files)
    return files
