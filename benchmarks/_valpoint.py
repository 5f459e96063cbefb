"""Operating point chosen on the official validation split, for the accuracy benchmark.

A finished run's global model (`global_model.pt` in its out folder) is scored on the dataset's
official `val` split (PneumoniaMNIST: 524 images, never trained on: the sites train on the
official train split); the threshold that maximises balanced accuracy there (Youden's J) is
then applied to the official test split. The test split never influences the threshold, so
the test figures at that threshold are honest estimates. Both splits are standardised with
their own statistics, as the server's central test split is. Recipes are compared on the
validation figures (AUC, best balanced accuracy); test figures are only reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold (predict positive when score >= t) that maximises TPR - FPR."""
    fpr, tpr, thr = roc_curve(y, score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thr[best], 1.0))


def _rates(y: np.ndarray, score: np.ndarray, t: float) -> dict[str, float]:
    pred = score >= t
    pos, neg = y == 1, y == 0
    sens = float(pred[pos].mean()) if pos.any() else float("nan")
    spec = float((~pred[neg]).mean()) if neg.any() else float("nan")
    return {"accuracy": float((pred == pos).mean()), "balanced_accuracy": (sens + spec) / 2,
            "sensitivity": sens, "specificity": spec}


def binary_scores(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """P(class 1) from `model` in evaluation mode."""
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[:, 1].double().numpy()


def val_operating_point(out_dir: Path, cfg, data_dir: str) -> dict[str, float] | None:
    """Validation-chosen threshold and its validation / test figures; None where the dataset has
    no official validation split or is not binary."""
    if cfg.data.dataset != "pneumoniamnist":
        return None
    from common.datasets.builtin import pneumoniamnist
    from common.models import build_model, resolve_model_name

    from common.datasets.contract import SiteData, normalise_with_site_stats

    # each split standardised with its own statistics, exactly as the server's central test is
    # (server/run_setup.py central_test_split)
    parts = {name: normalise_with_site_stats(SiteData(name, s, s), "image").test
             for name, s in pneumoniamnist.splits(data_dir).items() if name in ("val", "test")}
    model = build_model(resolve_model_name(cfg.training.model, "image"), (1, 28, 28), 2)
    model.load_state_dict(torch.load(Path(out_dir) / "global_model.pt", map_location="cpu", weights_only=True))
    yv, sv = parts["val"].y.reshape(-1).numpy(), binary_scores(model, parts["val"].x)
    yt, st = parts["test"].y.reshape(-1).numpy(), binary_scores(model, parts["test"].x)
    t = youden_threshold(yv, sv)
    val, test = _rates(yv, sv, t), _rates(yt, st, t)
    return {
        "threshold": t,
        "val_auc": float(roc_auc_score(yv, sv)),
        "val_balanced_accuracy": val["balanced_accuracy"],
        "test_auc": float(roc_auc_score(yt, st)),
        **{f"test_{k}": v for k, v in test.items()},
    }
