"""Everything the server decides before round 1: model, central evaluation, SecAgg+ ranges,
privacy records, and whether to resume a run that was interrupted."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.config import RunConfig
from common.datasets.contract import FederatedDataset, Split
from common.datasets.selection import load_run_dataset
from common.device import pick_device
from common.errors import ConfigError
from common.calibration import reliability_bins, probabilities
from common.evaluation import evaluate_at
from common.metrics import class_breakdown, roc_curve_points
from common.models import build_model, get_weights, model_options, resolve_model_name, set_weights
from common.privacy import privacy_mode
from server.operating import OperatingPointChooser, operator_standardised
from common.synthesis.setup import is_synthesis, synthesis_model, synthesis_model_name
from server.records import Listener, RunRecorder, load_checkpoint
from server.secure_aggregation import SecAggSettings, secagg_settings
from server.strategies import check_strategy

log = logging.getLogger("medfed.server")


@dataclass
class RunSetup:
    cfg: RunConfig
    out_dir: Path
    dataset: FederatedDataset
    model_name: str
    model: torch.nn.Module
    initial_weights: list[np.ndarray]
    num_sites: int
    secagg: SecAggSettings | None
    update_bound: float
    recorder: RunRecorder
    start_round: int
    optimizer_state: dict
    operating_point: OperatingPointChooser


def prepare_run(cfg: RunConfig, out_dir: Path, *, listeners: Sequence[Listener] = ()) -> RunSetup:
    """`listeners` receive the recorder's progress events (the simulation's live display)."""
    check_strategy(cfg.federation.strategy)  # before any data is loaded
    mode = privacy_mode(cfg.privacy.mode)
    cfg = mode.calibrated(cfg)
    dataset = load_run_dataset(cfg.data)
    if is_synthesis(cfg):  # the conditional GAN (generator + discriminator: one weight vector)
        model_name = synthesis_model_name(dataset)
        _, model = synthesis_model(cfg, dataset)
    else:
        model_name = resolve_model_name(cfg.training.model, dataset.modality)
        torch.manual_seed(cfg.data.seed)
        model = build_model(
            model_name, dataset.input_shape, dataset.num_classes, **model_options(dataset.modality, cfg.data.hash_buckets)
        )
    weights = get_weights(model)
    num_sites = max(cfg.data.num_sites, len(dataset.sites)) if cfg.data.partition != "natural" else len(dataset.sites)
    largest = max(len(s.train) for s in dataset.sites.values())
    secagg = (
        secagg_settings(cfg.secagg, cfg.privacy, num_sites=num_sites, largest_site=largest)
        if cfg.secagg.enabled
        else None
    )
    recorder = RunRecorder(
        out_dir,
        config=cfg.to_dict(),
        privacy_mode=cfg.privacy.mode,
        site_names=dataset.site_names(),
        secure_aggregation=secagg.to_dict() if secagg else {"enabled": False},
        client_dp=mode.privacy_record(cfg),
        listeners=listeners,
    )
    for warning in mode.setup_warnings(cfg, num_sites):
        recorder.event(0, warning)
    start_round, optimizer_state = 1, {}
    resumed = load_checkpoint(out_dir)
    if resumed is not None:
        state, saved_weights, optimizer_state = resumed
        _check_same_config(out_dir, cfg)
        if int(state["round"]) >= cfg.federation.num_rounds:
            raise ConfigError(
                f"The run in {out_dir} already finished all {cfg.federation.num_rounds} rounds.",
                "choose a new --out folder (or run-name) for a new run.",
            )
        recorder.restore(state)
        weights = saved_weights
        set_weights(model, weights)
        start_round = int(state["round"]) + 1
        log.warning("resuming run %s from round %d", out_dir, start_round)
        recorder.event(start_round, f"server restarted; resuming from round {start_round}")
    else:
        (out_dir / "run-config.json").write_text(json.dumps(cfg.to_flower(), indent=2))
    return RunSetup(
        cfg=cfg,
        out_dir=out_dir,
        dataset=dataset,
        model_name=model_name,
        model=model,
        initial_weights=weights,
        num_sites=num_sites,
        secagg=secagg,
        update_bound=mode.update_bound(cfg.secagg, cfg.privacy),
        recorder=recorder,
        start_round=start_round,
        optimizer_state=optimizer_state,
        operating_point=OperatingPointChooser(cfg, dataset, model_name, record=recorder.on_operating_point,
                                              device=pick_device("auto")),
    )


def _check_same_config(out_dir: Path, cfg: RunConfig) -> None:
    saved_path = out_dir / "run-config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    try:  # in today's spelling: a folder written before learning-rate=0 meant "automatic" resumes
        saved = RunConfig.from_flower({k: v for k, v in saved.items() if k in cfg.to_flower()}).to_flower()
    except ConfigError:
        pass  # compared as written: the keys that differ are named below
    current = cfg.to_flower()
    changed = sorted(k for k in current if k in saved and saved[k] != current[k] and k not in ("out-dir",))
    if changed:
        raise ConfigError(
            f"Cannot resume the run in {out_dir}: its configuration changed ({', '.join(changed)}).",
            "resume with the original configuration, or start a new run in a new folder.",
        )


def central_test_split(dataset: FederatedDataset) -> Split | None:
    """The operator's held-out test split, standardised as its validation split is
    (`operator_standardised`); None without one."""
    if dataset.central_test is None:
        return None
    return operator_standardised(dataset, dataset.central_test)


def make_central_evaluator(setup: RunSetup):
    """Flower `evaluate_fn`: the global model on the operator's held-out split, every round."""
    if is_synthesis(setup.cfg):
        return None  # a GAN has no accuracy; the synthetic table's quality report measures it
    split = central_test_split(setup.dataset) if setup.cfg.federation.central_eval else None
    if split is None:
        return None
    device = pick_device("auto")
    sizes = model_options(setup.dataset.modality, setup.cfg.data.hash_buckets)
    model = build_model(setup.model_name, setup.dataset.input_shape, setup.dataset.num_classes, **sizes).to(device)

    def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> tuple[float, dict]:
        set_weights(model, weights)
        point = setup.operating_point.current  # chosen on validation data before this call
        result = evaluate_at(model, split, threshold=point.threshold, temperature=point.temperature,
                             resamples=setup.cfg.evaluation.bootstrap_resamples, device=device)
        metrics, y = result.metrics, split.y.numpy()
        points = roc_curve_points(y, result.probs) if setup.dataset.num_classes == 2 else None
        roc = (
            {"fpr": points[0].tolist(), "tpr": points[1].tolist(), "auc": metrics.get("auc"),
             "point": {"fpr": 1 - metrics["specificity"], "tpr": metrics["sensitivity"], "threshold": point.threshold}
             if metrics.get("specificity") is not None and metrics.get("sensitivity") is not None else None}
            if points is not None
            else None
        )
        details = {
            "intervals": result.intervals,
            "confusion_matrix": result.confusion,
            "calibration": result.calibration,
            "reliability": {"before": reliability_bins(probabilities(result.logits), y),
                            "after": reliability_bins(result.probs, y)},
        }
        if setup.dataset.num_classes > 2:  # multiclass: confusion matrix and per-class sensitivity
            setup.recorder.final_classes = class_breakdown(y, result.probs)
        setup.recorder.on_central_evaluation(server_round, result.loss, metrics, roc, details)
        return float(result.loss), {k: float(v) for k, v in metrics.items() if v is not None}

    return evaluate

