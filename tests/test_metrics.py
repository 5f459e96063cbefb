"""Metrics: known values, undefined cases as None (silently), macro averages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.metrics import compute_metrics, roc_curve_points, weighted_mean


def binary_probs(p1):
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


def test_binary_known_values():
    y = np.array([0, 0, 0, 1, 1])
    probs = binary_probs([0.1, 0.6, 0.3, 0.8, 0.4])  # predictions 0 1 0 1 0
    m = compute_metrics(y, probs)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(1 / 2)  # one of two positives found
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # tp=1, fp=1, fn=1
    # AUC: pairs (pos, neg) ranked correctly: 0.8 beats all 3, 0.4 beats 0.1 and 0.3 -> 5/6
    assert m["auc"] == pytest.approx(5 / 6)


def test_single_class_and_empty_inputs_give_none_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        only_pos = compute_metrics(np.array([1, 1, 1]), binary_probs([0.9, 0.2, 0.7]))
        empty = compute_metrics(np.zeros(0, dtype=int), np.zeros((0, 2)))
        diverged = compute_metrics(np.array([0, 1]), np.array([[np.nan, np.nan], [0.5, 0.5]]))
        assert roc_curve_points(np.array([1, 1, 1]), binary_probs([0.9, 0.2, 0.7])) is None
    assert only_pos["auc"] is None and only_pos["specificity"] is None
    assert only_pos["sensitivity"] == pytest.approx(2 / 3)
    assert only_pos["accuracy"] == pytest.approx(2 / 3)
    assert empty["n"] == 0 and all(empty[k] is None for k in empty if k != "n")
    assert diverged["auc"] is None and diverged["accuracy"] is None


def test_multiclass_macro_auc_over_present_classes():
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 2])
    probs = rng.dirichlet(np.ones(4), size=len(y))  # class 3 never occurs in y
    m = compute_metrics(y, probs)
    expected = np.mean([roc_auc_score((y == c).astype(int), probs[:, c]) for c in (0, 1, 2)])
    assert m["auc"] == pytest.approx(expected)
    pred = probs.argmax(1)
    recalls = [np.mean(pred[y == c] == c) for c in (0, 1, 2)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert m["sensitivity"] == m["balanced_accuracy"]


def test_multiclass_perfect_predictions():
    y = np.array([0, 1, 2, 2])
    m = compute_metrics(y, np.eye(3)[y] * 0.9 + 0.1 / 3)
    assert m["accuracy"] == m["auc"] == m["f1"] == m["specificity"] == pytest.approx(1.0)


def test_weighted_mean_skips_none():
    a = {"accuracy": 0.5, "auc": None, "n": 10}
    b = {"accuracy": 1.0, "auc": 0.8, "n": 30}
    m = weighted_mean([(10, a), (30, b)])
    assert m["accuracy"] == pytest.approx((5 + 30) / 40)
    assert m["auc"] == pytest.approx(0.8)  # the None site is skipped, not counted as 0
    assert "n" not in m  # a count, not a rate
    assert "auc" not in weighted_mean([(5, {"auc": None})])


def test_weighted_mean_weights_by_examples_and_drops_text_booleans_and_empty_sites():
    m = weighted_mean([
        (1, {"site": "a", "loss": 1.0, "scaled": True}),
        (3, {"site": "b", "loss": 3.0, "epsilon": 2}),
        (0, {"loss": 100.0, "accuracy": 1.0}),
    ])
    assert m == {"loss": pytest.approx((1 * 1.0 + 3 * 3.0) / 4), "epsilon": pytest.approx(2.0)}


def test_roc_curve_points_binary():
    fpr, tpr = roc_curve_points(np.array([0, 0, 1, 1]), binary_probs([0.1, 0.4, 0.35, 0.8]))
    assert fpr[0] == 0 and tpr[-1] == 1 and len(fpr) == len(tpr)
    assert roc_curve_points(np.array([0, 1, 2]), np.eye(3)) is None


def test_shape_errors_are_loud():
    with pytest.raises(ValueError, match="rows"):
        compute_metrics(np.array([0, 1]), binary_probs([0.5]))
