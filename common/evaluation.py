"""Evaluate a model on a split: loss, clinical metrics and class probabilities.

Lives in `common` because both a site (federated evaluation) and the server (centralised
evaluation on the operator's held-out split) run exactly this.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.datasets.contract import Split
from common.metrics import Metrics, compute_metrics
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
