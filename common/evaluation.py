"""Evaluate a model on a split: loss, clinical metrics and class probabilities.

Lives in `common` because both a site (federated evaluation) and the server (centralised
evaluation on the operator's held-out split) run exactly this.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.datasets.contract import Split
from common.metrics import compute_metrics


@torch.no_grad()
def evaluate_model(
    model: nn.Module, split: Split, *, device: torch.device | str = "cpu", batch_size: int = 512
) -> tuple[float, dict[str, float | None], np.ndarray]:
    """(mean cross-entropy, metrics, probabilities of shape (n, num_classes))."""
    model.eval()
    n = len(split)
    if n == 0:
        return float("nan"), compute_metrics(np.zeros(0, dtype=np.int64), np.zeros((0, 2))), np.zeros((0, 2))
    losses, probs = [], []
    for start in range(0, n, batch_size):
        x = split.x[start : start + batch_size].to(device)
        y = split.y[start : start + batch_size].to(device)
        logits = model(x)
        losses.append(F.cross_entropy(logits, y, reduction="sum").item())
        probs.append(torch.softmax(logits, dim=1).cpu())
    p = torch.cat(probs).numpy()
    return sum(losses) / n, compute_metrics(split.y.numpy(), p), p
