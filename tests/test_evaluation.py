"""common/evaluation.py: evaluating a model on a site's test split, empty ones included."""

from __future__ import annotations

import numpy as np
import torch

from common.datasets.contract import Split
from common.evaluation import evaluate_model
from common.models import build_model

N, _FEATURES = 120, 6


def _data(n: int) -> Split:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, _FEATURES)).astype(np.float32)
    return Split(torch.from_numpy(x), torch.from_numpy((x[:, 0] - x[:, 1] > 0).astype(np.int64)))


def test_evaluate_copes_with_an_empty_test_split():
    model = build_model("mlp", (_FEATURES,), 2)
    loss, metrics, probs = evaluate_model(model, _data(0), device=torch.device("cpu"))
    assert np.isnan(loss) and probs.shape == (0, 2) and metrics["n"] == 0 and metrics["auc"] is None
    loss, metrics, probs = evaluate_model(model, _data(N), device=torch.device("cpu"))
    assert loss > 0 and probs.shape == (N, 2) and np.allclose(probs.sum(1), 1)
