"""The operating point: chosen on validation data by the configured rule, never on test data;
temperature scaling; bootstrap intervals; the sites' validation release."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.calibration import TEMPERATURE_GRID, ece, fit_temperature, nll, nll_on_grid, probabilities, temperature_from_grid
from common.config import RunConfig
from common.datasets.contract import FederatedDataset, SiteData, Split, with_validation
from common.intervals import bootstrap_intervals
from common.metrics import compute_metrics, decisions
from common.models import build_model, get_weights
from common.operating_point import (
    THRESHOLD_GRID,
    VAL_COUNTS_KEY,
    VAL_NLL_KEY,
    choose_threshold,
    exact_rates,
    grid_counts,
    rates_from_counts,
)
from server import operating
from server.operating import OperatingPointChooser, choose_central, choose_federated


def _scores(n: int, seed: int = 0, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and logits (n, 2) of a model that ranks well but is shifted toward positive."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(np.int64)
    margin = rng.normal(0, 1, n) + 2.0 * y + shift  # overcalls the positive class at 0.5
    return y, np.stack([np.zeros(n), margin], axis=1)


def _cfg(**keys) -> RunConfig:
    return RunConfig.from_flower({**RunConfig().to_flower(), **keys})


def test_youden_beats_the_arg_max_on_a_model_that_overcalls_the_positive_class() -> None:
    y, logits = _scores(2000)
    p = probabilities(logits)
    t, sens, spec = choose_threshold(*exact_rates(y, p[:, 1]), rule="youden", target_sensitivity=0.9)
    at_half = compute_metrics(y, p)
    chosen = compute_metrics(y, p, threshold=t)
    assert t > 0.6, "the shifted model needs a higher threshold than 0.5"
    assert chosen["balanced_accuracy"] > at_half["balanced_accuracy"] + 0.05
    assert chosen["sensitivity"] == pytest.approx(sens) and chosen["specificity"] == pytest.approx(spec)


def test_target_sensitivity_is_the_most_specific_threshold_reaching_the_target() -> None:
    y, logits = _scores(2000, seed=1)
    p = probabilities(logits)[:, 1]
    t, sens, spec = choose_threshold(*exact_rates(y, p), rule="target-sensitivity", target_sensitivity=0.95)
    assert sens >= 0.95
    above = compute_metrics(y, probabilities(logits), threshold=np.nextafter(t, 1.0))
    assert above["sensitivity"] < 0.95, "any higher threshold misses the target"
    assert choose_threshold(*exact_rates(y, p), rule="fixed", target_sensitivity=0.9)[0] == 0.5


def test_grid_counts_sum_across_sites_to_the_pooled_counts() -> None:
    y, logits = _scores(900, seed=2)
    p = probabilities(logits)[:, 1]
    parts = np.array_split(np.arange(900), 3)
    summed = sum(grid_counts(y[i], p[i]) for i in parts)
    np.testing.assert_array_equal(summed, grid_counts(y, p))
    sens, spec = rates_from_counts(summed)
    i = int(np.argmin(np.abs(THRESHOLD_GRID - 0.5)))
    m = compute_metrics(y, probabilities(logits), threshold=float(THRESHOLD_GRID[i]))
    assert sens[i] == pytest.approx(m["sensitivity"]) and spec[i] == pytest.approx(m["specificity"])


def test_federated_choice_from_site_replies_matches_the_pooled_choice() -> None:
    cfg = _cfg()
    y, logits = _scores(1200, seed=3)
    parts = np.array_split(np.arange(1200), 4)
    replies = [
        {VAL_COUNTS_KEY: json.dumps(grid_counts(y[i], probabilities(logits[i])[:, 1]).tolist()),
         VAL_NLL_KEY: json.dumps(nll_on_grid(logits[i], y[i]).tolist()), "n_val": len(i)}
        for i in parts
    ]
    point = choose_federated(cfg, 2, replies)
    assert point.source.startswith("site validation") and point.validation_n == 1200
    assert point.temperature == temperature_from_grid(nll_on_grid(logits, y))
    central = choose_central(cfg, logits, y)
    assert abs(point.validation_sensitivity + point.validation_specificity
               - central.validation_sensitivity - central.validation_specificity) < 0.03
    none = choose_federated(cfg, 2, [])
    assert none.source == "default" and none.threshold == 0.5 and "release-evaluation" in none.note


def test_temperature_scaling_lowers_validation_nll_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 3000)
    clean = np.eye(3)[y] * 1.0 + rng.normal(0, 1.0, (3000, 3))
    overconfident = clean * 8.0  # same ranking, logits far too large
    t = fit_temperature(overconfident, y)
    assert t > 3.0
    assert nll(overconfident, y, t) < 0.7 * nll(overconfident, y)
    assert ece(probabilities(overconfident, t), y) < ece(probabilities(overconfident), y)
    assert (probabilities(overconfident, t).argmax(1) == overconfident.argmax(1)).all(), "ranking unchanged"
    grid_t = temperature_from_grid(nll_on_grid(overconfident, y))
    assert grid_t in TEMPERATURE_GRID and abs(np.log2(grid_t / t)) <= 1 / 8


def test_intervals_cover_the_point_estimate_and_shrink_with_more_data() -> None:
    widths = []
    for n in (200, 3200):
        y, logits = _scores(n, seed=5)
        p = probabilities(logits)
        pred = decisions(p, 0.7)
        point = compute_metrics(y, p, threshold=0.7)
        ci = bootstrap_intervals(y, p, pred, resamples=1000, seed=0)
        for metric, (low, high) in ci.items():
            assert low <= point[metric] <= high, f"{metric} at n={n}: {point[metric]} outside [{low}, {high}]"
        widths.append({m: hi - lo for m, (lo, hi) in ci.items()})
    for metric in widths[0]:
        assert widths[1][metric] < 0.5 * widths[0][metric], metric
    y, logits = _scores(300, seed=6)
    p = probabilities(logits)
    assert bootstrap_intervals(y, p, decisions(p), seed=1) == bootstrap_intervals(y, p, decisions(p), seed=1)
    one_class = bootstrap_intervals(np.ones(50, dtype=int), p[:50], decisions(p[:50]))
    assert one_class["auc"] is None and one_class["sensitivity"] is not None


def test_multiclass_intervals_and_point_keep_the_arg_max() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 5, 500)
    logits = np.eye(5)[y] * 2 + rng.normal(0, 1, (500, 5))
    p = probabilities(logits)
    ci = bootstrap_intervals(y, p, decisions(p))
    point = compute_metrics(y, p)
    assert all(ci[m][0] <= point[m] <= ci[m][1] for m in ("auc", "accuracy", "balanced_accuracy"))
    op = choose_central(_cfg(), logits, y)
    assert op.threshold is None and op.rule.startswith("arg-max")


def _dataset(test_labels: torch.Tensor | None = None) -> FederatedDataset:
    g = torch.Generator().manual_seed(0)
    x_val, y_val = torch.randn(120, 1, 28, 28, generator=g), torch.randint(0, 2, (120,), generator=g)
    x_test, y_test = torch.randn(80, 1, 28, 28, generator=g), torch.randint(0, 2, (80,), generator=g)
    site = SiteData("s", Split(x_val, y_val), Split(x_test, y_test))
    return FederatedDataset("toy", "image", (1, 28, 28), 2, ["normal", "pneumonia"], {"s": site},
                            central_test=Split(x_test, test_labels if test_labels is not None else y_test),
                            central_val=Split(x_val, y_val))


def test_the_server_choice_never_sees_test_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poisoning the central test labels changes nothing, and the selector is handed the
    validation split only (a spy on what `choose_central` receives)."""
    torch.manual_seed(0)
    model = build_model("cnn", (1, 28, 28), 2)
    weights = get_weights(model)
    seen: list[np.ndarray] = []
    real = operating.choose_central

    def spy(cfg, logits, y):
        seen.append(np.asarray(y))
        return real(cfg, logits, y)

    monkeypatch.setattr(operating, "choose_central", spy)
    clean = _dataset()
    points = []
    for ds in (clean, _dataset(1 - clean.central_test.y)):
        chooser = OperatingPointChooser(_cfg(), ds, "cnn", record=lambda r, p: None)
        chooser.step(None, None, None, 1, weights, 1.0)
        points.append(chooser.current)
    assert points[0] == points[1] and points[0].source == "central validation"
    assert all(np.array_equal(y, clean.central_val.y.numpy()) for y in seen)
    flipped = OperatingPointChooser(_cfg(), _dataset(), "cnn", record=lambda r, p: None)
    flipped.val = Split(flipped.val.x, 1 - flipped.val.y)  # ... while the validation labels do matter
    flipped.step(None, None, None, 1, weights, 1.0)
    assert flipped.current != points[0]


def test_validation_is_carved_from_training_rows_stratified_and_deterministic() -> None:
    y = torch.tensor([0] * 300 + [1] * 100)
    site = SiteData("site-0", Split(torch.arange(400).float().reshape(-1, 1), y), Split(torch.zeros(5, 1), torch.zeros(5).long()))
    a, b = with_validation(site, 0.1, seed=3), with_validation(site, 0.1, seed=3)
    assert len(a.val) == 40 and len(a.train) == 360 and a.val.class_counts(2) == [30, 10]
    assert torch.equal(a.val.x, b.val.x)
    assert not set(a.val.x.reshape(-1).tolist()) & set(a.train.x.reshape(-1).tolist()), "never trained on"
    assert not torch.equal(with_validation(site, 0.1, seed=4).val.x, a.val.x)
    assert with_validation(a, 0.2, seed=9) is a


def test_config_refuses_bad_evaluation_settings() -> None:
    from common.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _cfg(**{"threshold-rule": "max-accuracy", "target-sensitivity": 1.5, "validation-fraction": 0.0,
                "bootstrap-resamples": 5})
    text = str(err.value)
    for key in ("threshold-rule", "target-sensitivity", "validation-fraction", "bootstrap-resamples"):
        assert key in text
