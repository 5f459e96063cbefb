"""A site refuses bad global weights before training, and refuses to train past its budget,
without charging its privacy ledger and without releasing anything derived from its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client.flower_client import MedfedClient
from client.privacy.ledger import PrivacyLedger
from client.site import site_run
from common.config import RunConfig
from common.calibration import TEMPERATURE_GRID
from common.errors import ModelMismatchError
from common.operating_point import EVAL_PHASE_KEY, THRESHOLD_GRID, THRESHOLD_KEY, VAL_COUNTS_KEY, VAL_NLL_KEY, VALIDATION_PHASE


def _client(tmp_path: Path, **overrides) -> MedfedClient:
    flat = RunConfig().to_flower() | {
        "dataset": "heart-disease",
        "partition": "natural",
        "num-rounds": 2,
        "local-epochs": 1,
        "out-dir": str(tmp_path / "run"),
    } | overrides
    cfg = RunConfig.from_flower(flat)
    settings = site_run(cfg, {"partition-id": 1}, run_id=1)
    return MedfedClient(cfg, settings, run_name="guards")


def _ledger(client: MedfedClient) -> Path:
    return client.settings.state_dir / "privacy-ledger.json"


@pytest.mark.parametrize("corrupt", ["shape", "dtype", "nan", "count"])
def test_bad_global_weights_are_refused_before_training(tmp_path: Path, data_dir: Path, corrupt: str) -> None:
    client = _client(tmp_path)
    good = client.get_parameters({})
    bad = [w.copy() for w in good]
    if corrupt == "shape":
        bad[0] = np.zeros((bad[0].shape[0] + 1, *bad[0].shape[1:]), dtype=bad[0].dtype)
    elif corrupt == "dtype":
        bad[0] = bad[0].astype(np.float64)
    elif corrupt == "nan":
        bad[-1] = np.full_like(bad[-1], np.nan)
    else:
        bad = bad[:-1]
    with pytest.raises(ModelMismatchError):
        client.fit(bad, {})
    assert not _ledger(client).exists(), "nothing may be charged for a round that never trained"
    for a, b in zip(client.get_parameters({}), good):
        np.testing.assert_array_equal(a, b)


def test_training_past_the_budget_is_refused_and_releases_nothing(tmp_path: Path, data_dir: Path) -> None:
    client = _client(tmp_path, **{"num-rounds": 1})
    weights = client.get_parameters({})
    _, n, metrics = client.fit(weights, {})
    assert n > 0 and 0 < metrics["epsilon"] <= metrics["epsilon_budget"]
    spent = PrivacyLedger(_ledger(client)).summary()["guards"]["spent"]
    returned, n2, metrics2 = client.fit(weights, {})  # a second round was never planned: over budget
    assert n2 == 0 and "refused" in metrics2
    for a, b in zip(returned, weights):
        np.testing.assert_array_equal(a, b)  # the global weights go back untouched
    after = PrivacyLedger(_ledger(client)).summary()["guards"]
    assert after["spent"] == spent and after["status"] == "exhausted"


def test_evaluation_returns_only_aggregate_metrics(tmp_path: Path, data_dir: Path) -> None:
    client = _client(tmp_path)
    loss, n, metrics = client.evaluate(client.get_parameters({}), {})
    assert n == len(client.site.test) and np.isfinite(loss)
    assert metrics["site"] == client.settings.name
    # numbers, plus two JSON aggregates: the 95 % intervals (metric -> [low, high]) and the 2x2 confusion matrix
    assert all(isinstance(v, (int, float)) for k, v in metrics.items() if k not in ("site", "intervals", "confusion"))
    intervals, confusion = json.loads(metrics["intervals"]), json.loads(metrics["confusion"])
    assert all(v is None or len(v) == 2 for v in intervals.values())
    assert np.array(confusion).shape == (2, 2) and np.array(confusion).sum() == n


def test_validation_phase_releases_grid_counts_of_the_validation_split_only(tmp_path: Path, data_dir: Path) -> None:
    client = _client(tmp_path)
    weights = client.get_parameters({})
    phase = {EVAL_PHASE_KEY: VALIDATION_PHASE}
    loss, n, metrics = client.evaluate(weights, phase)
    assert n == len(client.site.val) > 0 and np.isfinite(loss)
    counts = np.array(json.loads(metrics[VAL_COUNTS_KEY]))
    assert counts.shape == (len(THRESHOLD_GRID), 4) and (counts.sum(axis=1) == n).all()
    assert len(json.loads(metrics[VAL_NLL_KEY])) == len(TEMPERATURE_GRID)
    client.site.test.y = 1 - client.site.test.y  # poisoned test labels change nothing the server chooses on
    assert client.evaluate(weights, phase) == (loss, n, metrics)
    # the test phase scores at the threshold the server sends
    low, high = client.evaluate(weights, {THRESHOLD_KEY: 1e-6})[2], client.evaluate(weights, {THRESHOLD_KEY: 1 - 1e-6})[2]
    assert low["sensitivity"] == 1.0 and high["sensitivity"] == 0.0
