"""Classification metrics that cope with small, skewed hospital test sets.

A site's test split can hold a single class (FLamby's Switzerland site has one negative
case) or nothing at all. scikit-learn then warns or raises; here an undefined value is
`None`, so per-site reports and weighted averages keep working and never spam warnings.

Conventions (probs has shape (n, K); predictions are the arg-max, or for a binary model with a
chosen operating point, "positive when p(class 1) >= threshold" (common/operating_point.py)):
  * binary (K == 2): auc = ROC AUC of class 1, f1 / sensitivity = F1 / recall of class 1,
    specificity = recall of class 0;
  * multiclass: macro averages; auc is one-vs-rest over the classes present in y_true,
    recall-based values (sensitivity, specificity, balanced accuracy) average over the classes
    present in y_true, F1 over the classes present in y_true or the predictions.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

METRIC_NAMES = ("accuracy", "balanced_accuracy", "auc", "f1", "sensitivity", "specificity")
Metrics = dict[str, "float | int | None"]  # "n" is an int


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (n, K) with K >= 2; got {p.shape}.")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} labels but probs has {p.shape[0]} rows.")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in 0..{p.shape[1] - 1}; got {y.min()}..{y.max()}.")
    return y, p


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of a binary indicator; None unless both outcomes occur."""
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, scores))


def decisions(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted classes: arg-max, or for two classes with a threshold, p(class 1) >= threshold."""
    p = np.asarray(probs, dtype=np.float64)
    if threshold is not None and p.shape[1] == 2:
        return (p[:, 1] >= threshold).astype(np.int64)
    return p.argmax(axis=1).astype(np.int64)


def confusion_matrix(y_true: np.ndarray, pred: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true).reshape(-1).astype(np.int64), np.asarray(pred).reshape(-1)), 1)
    return cm.tolist()


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> Metrics:
    """Accuracy, balanced accuracy, AUC, F1, sensitivity, specificity and `n` (see module doc);
    every value but AUC at `threshold` (binary only; None = arg-max)."""
    y, p = _check(y_true, probs)
    n, k = p.shape
    out: Metrics = {name: None for name in METRIC_NAMES}
    out["n"] = n
    if n == 0 or not np.all(np.isfinite(p)):  # nothing to score, or a diverged model
        return out
    pred = decisions(p, threshold)
    cm = np.asarray(confusion_matrix(y, pred, k))
    tp = np.diag(cm).astype(float)
    true_count = cm.sum(axis=1).astype(float)
    pred_count = cm.sum(axis=0).astype(float)
    recall = [_ratio(tp[c], true_count[c]) for c in range(k)]
    negatives = n - true_count
    true_neg = n - true_count - pred_count + tp
    specificity = [_ratio(true_neg[c], negatives[c]) if true_count[c] > 0 else None for c in range(k)]
    f1 = [_ratio(2 * tp[c], true_count[c] + pred_count[c]) for c in range(k)]

    out["accuracy"] = float(tp.sum() / n)
    out["balanced_accuracy"] = _mean(recall)
    if k == 2:
        out["auc"] = _auc(y, p[:, 1])
        out["f1"] = f1[1]
        out["sensitivity"] = recall[1]
        out["specificity"] = recall[0]
    else:
        present = [c for c in range(k) if true_count[c] > 0]
        out["auc"] = _mean(_auc((y == c).astype(int), p[:, c]) for c in present) if len(present) > 1 else None
        out["f1"] = _mean(f1)
        out["sensitivity"] = out["balanced_accuracy"]
        out["specificity"] = _mean(specificity)
    return out


def class_breakdown(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Per class, for a multiclass report: the confusion matrix (rows true class, columns
    predicted, arg-max), each class's sensitivity (recall; None when the class is absent) and F1.
    JSON-ready lists, in class order."""
    y, p = _check(y_true, probs)
    k = p.shape[1]
    cm = np.zeros((k, k), dtype=np.int64)
    if y.size and np.all(np.isfinite(p)):
        np.add.at(cm, (y, p.argmax(axis=1)), 1)
    tp, true_count, pred_count = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    return {
        "confusion_matrix": cm.tolist(),
        "sensitivity_per_class": [_ratio(tp[c], true_count[c]) for c in range(k)],
        "f1_per_class": [_ratio(2 * tp[c], true_count[c] + pred_count[c]) for c in range(k)],
    }


def weighted_mean(results: Iterable[tuple[int, Mapping[str, Any]]]) -> dict[str, float]:
    """Example-weighted mean, key by key, of the numeric values that sites report.

    The one such mean in medfed: the strategy aggregates the sites' Flower metrics with it and
    the run records compute the federated metrics with it, so the two always agree. A site's
    value that is None, text or a boolean is skipped (never counted as a zero), as is a site with
    no examples; a key no site can weight is left out (Flower metrics cannot hold None); `n` is
    a count, not a rate, and is not averaged.
    """
    totals: dict[str, float] = {}
    weights: dict[str, int] = {}
    for n, metrics in results:
        if n <= 0:
            continue
        for key, value in metrics.items():
            if key != "n" and isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0.0) + n * float(value)
                weights[key] = weights.get(key, 0) + n
    return {key: totals[key] / weights[key] for key in totals}


def roc_curve_points(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(false positive rates, true positive rates) for a binary problem, or None if undefined."""
    y, p = _check(y_true, probs)
    if p.shape[1] != 2 or y.size == 0 or y.min() == y.max() or not np.all(np.isfinite(p)):
        return None
    fpr, tpr, _ = roc_curve(y, p[:, 1])
    return fpr, tpr
