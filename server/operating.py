"""The server's choice of the operating point (threshold + temperature), once per round.

Runs after aggregation and before any test evaluation of that round, so every test metric of
the round (central and per site) is taken at a threshold and a temperature fixed beforehand
from validation data only:

* central path: the dataset has an operator validation split (`central_val`) and central
  evaluation is on: fit the temperature on its logits, choose the threshold on its calibrated
  scores (exact, every distinct score);
* federated path: otherwise, one extra evaluate exchange asks each site for its validation
  counts (threshold grid) and NLL sums (temperature grid); the server sums what the sites
  release and applies the same rule to the sum. Sites whose policy withholds evaluation
  metrics are left out; with no site releasing, the point stays at the default (0.5, T = 1),
  and the run's events say so.

Nothing here reads a test split: `choose_central` gets the validation split only, and the
federated replies hold validation counts only (tests/test_operating_point.py poisons the test
labels to prove it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable, cast

import numpy as np
import torch
from flwr.common import EvaluateIns
from flwr.server.compat.legacy_context import LegacyContext
from flwr.serverapp.grid import Grid

from common.calibration import TEMPERATURE_GRID, fit_temperature, probabilities, temperature_from_grid
from common.config import RunConfig
from common.datasets.contract import FederatedDataset, SiteData, Split, normalise_with_site_stats
from common.evaluation import predict_logits
from common.models import build_model, model_options, set_weights
from common.operating_point import (
    DEFAULT_THRESHOLD,
    EVAL_PHASE_KEY,
    THRESHOLD_GRID,
    VAL_COUNTS_KEY,
    VAL_NLL_KEY,
    VALIDATION_PHASE,
    OperatingPoint,
    calibrated_threshold,
    choose_threshold,
    exact_rates,
    rates_from_counts,
)

Recorder = Callable[[int, dict], None]


def operator_standardised(dataset: FederatedDataset, split: Split) -> Split:
    """One of the operator's splits, standardised the way the operator's validation split is.

    The operator standardises like a site, with statistics of data it may look at: its
    validation split when it holds one (the official splits), so test inputs never shape their
    own preprocessing; without one (pooled site test rows) the split's own statistics.
    """
    val = dataset.central_val
    reference = val if val is not None and len(val) else split
    return normalise_with_site_stats(SiteData("central", reference, split), dataset.modality).test


def central_validation_split(dataset: FederatedDataset) -> Split | None:
    """The operator's validation split, standardised with its own statistics; None without one."""
    if dataset.central_val is None or len(dataset.central_val) == 0:
        return None
    return operator_standardised(dataset, dataset.central_val)


def default_point(cfg: RunConfig, num_classes: int, note: str) -> OperatingPoint:
    binary = num_classes == 2
    return OperatingPoint(
        rule=cfg.evaluation.threshold_rule if binary else "arg-max (multiclass)",
        threshold=DEFAULT_THRESHOLD if binary else None,
        source="default",
        target_sensitivity=_target(cfg) if binary else None,
        note=note,
    )


def _target(cfg: RunConfig) -> float | None:
    return cfg.evaluation.target_sensitivity if cfg.evaluation.threshold_rule == "target-sensitivity" else None


def choose_central(cfg: RunConfig, logits: np.ndarray, y: np.ndarray) -> OperatingPoint:
    """The operating point from the operator's validation logits and labels (nothing else)."""
    y = np.asarray(y).reshape(-1)
    temperature = fit_temperature(logits, y)
    if logits.shape[1] != 2:
        return OperatingPoint("arg-max (multiclass)", None, temperature, "central validation", len(y))
    if y.min() == y.max():
        return replace(default_point(cfg, 2, "the validation split holds one class only"), temperature=temperature)
    probs = probabilities(logits, temperature)[:, 1]
    thresholds, sens, spec = exact_rates(y, probs)
    t, s, sp = choose_threshold(thresholds, sens, spec, rule=cfg.evaluation.threshold_rule,
                                target_sensitivity=cfg.evaluation.target_sensitivity)
    return OperatingPoint(cfg.evaluation.threshold_rule, t, temperature, "central validation", len(y), s, sp, _target(cfg))


def choose_federated(cfg: RunConfig, num_classes: int, replies: list[dict]) -> OperatingPoint:
    """The operating point from the sites' released validation sums (`replies`: their metrics)."""
    released = [m for m in replies if VAL_NLL_KEY in m]
    if not released:
        return default_point(cfg, num_classes, "no site released validation counts (release-evaluation)")
    nll = np.sum([json.loads(m[VAL_NLL_KEY]) for m in released], axis=0)
    temperature = temperature_from_grid(nll, TEMPERATURE_GRID)
    n = int(sum(int(m.get("n_val", 0)) for m in released))
    if num_classes != 2:
        return OperatingPoint("arg-max (multiclass)", None, temperature, "site validation", n)
    counts = np.sum([json.loads(m[VAL_COUNTS_KEY]) for m in released if VAL_COUNTS_KEY in m], axis=0)
    n = int(counts[0].sum())
    sens, spec = rates_from_counts(counts)
    if not (np.isfinite(sens).any() and np.isfinite(spec).any()):
        return replace(default_point(cfg, 2, "the sites' validation splits hold one class only"), temperature=temperature)
    raw, s, sp = choose_threshold(THRESHOLD_GRID, sens, spec, rule=cfg.evaluation.threshold_rule,
                                  target_sensitivity=cfg.evaluation.target_sensitivity)
    return OperatingPoint(cfg.evaluation.threshold_rule, calibrated_threshold(raw, temperature), temperature,
                          f"site validation ({len(released)} sites)", n, s, sp, _target(cfg))


class OperatingPointChooser:
    """Holds the round's operating point; `step` is the workflow step that chooses it."""

    def __init__(self, cfg: RunConfig, dataset: FederatedDataset, model_name: str, *, record: Recorder,
                 device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.num_classes = dataset.num_classes
        # A synthesis run has no classifier to choose a threshold for (its quality is measured on
        # the synthetic data), even where the dataset has an operator validation split.
        synthesis = cfg.synthesis.task == "synthesize"
        self.val = central_validation_split(dataset) if cfg.federation.central_eval and not synthesis else None
        self.record = record
        self.device = device
        sizes = model_options(dataset.modality, cfg.data.hash_buckets)
        self.model = build_model(model_name, dataset.input_shape, dataset.num_classes, **sizes).to(device) if self.val else None
        self.current = default_point(cfg, self.num_classes, "before the first choice")

    @property
    def central(self) -> bool:
        return self.val is not None

    def choose_from_weights(self, weights: list[np.ndarray]) -> OperatingPoint:
        assert self.val is not None and self.model is not None
        set_weights(self.model, weights)
        logits = predict_logits(self.model, self.val.x, device=self.device).double().numpy()
        return choose_central(self.cfg, logits, self.val.y.numpy())

    def fixed(self, point: OperatingPoint) -> OperatingPoint:
        """`point`, unless the rule is "fixed": then 0.5 (the temperature is still reported)."""
        if self.cfg.evaluation.threshold_rule == "fixed" and point.threshold is not None:
            return replace(point, threshold=DEFAULT_THRESHOLD)
        return point

    def step(self, grid: Grid, context, exchange, rnd: int, weights: list[np.ndarray], timeout: float) -> None:
        """Choose the round's point: centrally, or (rounds >= 1) from the sites' validation replies."""
        if self.central:
            point = self.choose_from_weights(weights)
        elif rnd == 0:
            point = default_point(self.cfg, self.num_classes, "untrained model: no validation exchange")
        else:
            ctx = cast(LegacyContext, context)
            params = _params(weights)
            instructions = [
                (proxy, EvaluateIns(ins.parameters, {**ins.config, EVAL_PHASE_KEY: VALIDATION_PHASE}))
                for proxy, ins in ctx.strategy.configure_evaluate(rnd, params, ctx.client_manager)
            ]
            results, _failures = exchange(grid, rnd, instructions, train=False, timeout=timeout) if instructions else ([], [])
            replies = [{**dict(res.metrics), "n_val": res.num_examples} for _, res in results
                       if res.num_examples > 0 and "withheld" not in res.metrics]
            point = choose_federated(self.cfg, self.num_classes, replies)
        self.current = self.fixed(point)
        self.record(rnd, self.current.to_dict())


def _params(weights: list[np.ndarray]):
    from flwr.common import ndarrays_to_parameters

    return ndarrays_to_parameters(weights)
