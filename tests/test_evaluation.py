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


def test_the_central_test_split_is_standardised_with_the_operators_validation_statistics():
    """Test inputs never shape their own preprocessing when the operator holds a validation split:
    one test row's standardised value does not depend on the other test rows."""
    from common.datasets.contract import FederatedDataset, SiteData, Split
    from server.run_setup import central_test_split

    rng = np.random.default_rng(0)
    val = Split.of(rng.normal(3.0, 2.0, (200, 4)).astype(np.float32), rng.integers(0, 2, 200))

    def central(test_x: np.ndarray) -> torch.Tensor:
        test = Split.of(test_x.astype(np.float32), np.zeros(len(test_x), dtype=np.int64))
        site = SiteData("s", val, val)
        ds = FederatedDataset("d", "tabular", (4,), 2, ["a", "b"], {"s": site}, central_test=test, central_val=val)
        return central_test_split(ds).x

    first = rng.normal(0.0, 1.0, (1, 4))
    a = central(np.vstack([first, rng.normal(0.0, 1.0, (50, 4))]))
    b = central(np.vstack([first, rng.normal(10.0, 5.0, (50, 4))]))
    assert torch.allclose(a[0], b[0])
    expected = (torch.from_numpy(first[0]).float() - val.x.mean(0)) / val.x.std(0)
    assert torch.allclose(a[0], expected, atol=1e-5)
