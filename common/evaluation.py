"""Evaluate a model on a split: loss, clinical metrics and class probabilities.

Lives in `common` because both a site (federated evaluation) and the server (centralised
evaluation on the operator's held-out split) run exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.datasets.contract import Split
from common.calibration import calibration_summary, probabilities
from common.intervals import bootstrap_intervals
from common.metrics import Metrics, compute_metrics, confusion_matrix, decisions
from common.models import unwrap_model


def _num_classes(model: nn.Module) -> int:
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1].out_features if heads else 2


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, device: torch.device | str, batch_size: int = 512) -> torch.Tensor:
    """Logits (n, K) on the CPU, computed in evaluation mode; the model's train/eval mode is restored."""
    model = unwrap_model(model).to(device)
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros((0, _num_classes(model)))


def evaluate_model(
    model: nn.Module, split: Split, *, device: torch.device | str = "cpu", batch_size: int = 512
) -> tuple[float, Metrics, np.ndarray]:
    """(mean cross-entropy, metrics, class probabilities (n, K)) of `model` on `split`.

    An empty split gives a NaN loss and None metrics rather than an error: a site may hold
    no test data, and the federation should still report the other sites.
    """
    logits = predict_logits(model, split.x, device=device, batch_size=batch_size)
    probs = torch.softmax(logits, dim=1).double().numpy()
    y = split.y.reshape(-1).long()
    loss = float(nn.functional.cross_entropy(logits, y)) if len(y) else float("nan")
    return loss, compute_metrics(y.numpy(), probs), probs


@dataclass
class Evaluation:
    """One split scored at an operating point: what the central and the site reports hold.

    loss: cross-entropy of the raw (uncalibrated) model; metrics: at `threshold` on the
    calibrated probabilities (AUC is threshold-free); intervals: 95 % stratified bootstrap;
    confusion: rows true class, columns predicted; calibration: Brier, ECE and NLL before and
    after the temperature.
    """

    loss: float
    metrics: Metrics
    probs: np.ndarray
    logits: np.ndarray
    intervals: dict
    confusion: list[list[int]]
    calibration: dict


def evaluate_at(
    model: nn.Module,
    split: Split,
    *,
    threshold: float | None,
    temperature: float = 1.0,
    resamples: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Score `model` on `split` at (threshold, temperature), with intervals and calibration."""
    logits_t = predict_logits(model, split.x, device=device)
    y_t = split.y.reshape(-1).long()
    loss = float(nn.functional.cross_entropy(logits_t, y_t)) if len(y_t) else float("nan")
    logits, y = logits_t.double().numpy(), y_t.numpy()
    probs = probabilities(logits, temperature)
    pred = decisions(probs, threshold) if len(y) else np.zeros(0, dtype=np.int64)
    k = probs.shape[1]
    return Evaluation(
        loss=loss,
        metrics=compute_metrics(y, probs, threshold),
        probs=probs,
        logits=logits,
        intervals=bootstrap_intervals(y, probs, pred, resamples=resamples, seed=seed),
        confusion=confusion_matrix(y, pred, k),
        calibration=calibration_summary(logits, y, temperature) if len(y) else {},
    )
