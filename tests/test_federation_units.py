"""Fast unit tests of the federation pieces (no Ray): update codec, SecAgg+ ranges, the strategy
stack's decoding and rejection rules, run records and checkpoints, config defaults."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.quantization import dequantize, quantize

from common.config import PrivacyConfig, RunConfig, SecAggConfig
from common.errors import ConfigError, ModelMismatchError
from common.updates import check_arrays, decode_update, encode_update
from server.records import RunRecorder, load_checkpoint
from server.secure_aggregation import secagg_settings
from server.strategy import build_strategy

REPO = Path(__file__).resolve().parents[1]


# -- config ------------------------------------------------------------------------------------
def test_pyproject_defaults_are_the_config_defaults() -> None:
    flower_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert RunConfig.from_flower(flower_cfg) == RunConfig(), "pyproject [tool.flwr.app.config] drifted from RunConfig"
    assert set(flower_cfg) == set(RunConfig().to_flower()), "every knob must be in pyproject"


# -- update codec --------------------------------------------------------------------------------
def test_encode_decode_roundtrip_and_bound() -> None:
    g = [np.ones((3, 2), np.float32), np.zeros(4, np.float32)]
    local = [g[0] + 0.1, g[1] - 0.2]
    enc = encode_update(local, g, bound=1.0)
    assert not enc.scaled
    for a, b in zip(decode_update(g, enc.delta), local):
        np.testing.assert_allclose(a, b, atol=1e-6)
    big = [g[0] + 5.0, g[1] - 10.0]
    enc = encode_update(big, g, bound=1.0)
    assert enc.scaled and enc.inf_norm == pytest.approx(10.0)
    assert max(float(np.abs(d).max()) for d in enc.delta) <= 1.0 + 1e-6
    # direction kept: the scaled update is proportional to the original
    np.testing.assert_allclose(enc.delta[0] / enc.delta[1].mean(), (big[0] - g[0]) / (big[1] - g[1]).mean(), rtol=1e-5)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ([np.zeros((3, 2), np.float32)], "expected 2 tensors"),
        ([np.zeros((2, 3), np.float32), np.zeros(4, np.float32)], "shape"),
        ([np.zeros((3, 2), np.float64), np.zeros(4, np.float32)], "dtype"),
        ([np.full((3, 2), np.nan, np.float32), np.zeros(4, np.float32)], "NaN"),
        ([np.full((3, 2), 9.0, np.float32), np.zeros(4, np.float32)], "above the bound"),
    ],
)
def test_check_arrays_rejects_bad_updates(arrays, match) -> None:
    ref = [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)]
    with pytest.raises(ModelMismatchError, match=match):
        check_arrays(arrays, ref, what="update", max_abs=1.0)


# -- SecAgg+ ranges ------------------------------------------------------------------------------
@pytest.mark.parametrize("num_sites", [3, 4, 8, 50, 200])
def test_secagg_ranges_cannot_overflow_and_are_fine_grained(num_sites: int) -> None:
    s = secagg_settings(SecAggConfig(), PrivacyConfig(), num_sites=num_sites, largest_site=1000)
    assert s.quantization_range * (num_sites + 1) <= s.modulus_range
    assert s.quantization_range < 2**31  # Flower's int32 stochastic rounding
    assert s.num_shares > s.reconstruction_threshold >= 2
    # Quantising a sum of `num_sites` updates at the bound stays exact within one step per site.
    rng = np.random.default_rng(num_sites)
    updates = [rng.uniform(-s.clipping_range, s.clipping_range, 50) for _ in range(num_sites)]
    q = sum(quantize([u], s.clipping_range, s.quantization_range)[0].astype(np.int64) for u in updates)
    assert int(q.max()) < s.modulus_range
    recovered = dequantize([q], s.clipping_range, s.quantization_range)[0] - (num_sites - 1) * s.clipping_range
    np.testing.assert_allclose(recovered, sum(updates), atol=num_sites * s.quantization_step)


def test_client_dp_uses_the_clipping_norm_as_range() -> None:
    s = secagg_settings(SecAggConfig(), PrivacyConfig(mode="client-dp", max_grad_norm=0.3), num_sites=4, largest_site=10)
    assert s.clipping_range == 0.3


def test_secagg_needs_three_sites() -> None:
    with pytest.raises(ConfigError, match="at least"):
        secagg_settings(SecAggConfig(), PrivacyConfig(), num_sites=2, largest_site=10)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"secagg-threshold": 3, "secagg-num-shares": 3}, "secagg-threshold"),
        ({"secagg-num-shares": 2}, "secagg-num-shares"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"strategy": "fedsgd"}, "strategy"),
        ({"min-sites": 9}, "min-sites"),
    ],
)
def test_invalid_run_config_is_refused_with_the_key_named(changes: dict, key: str) -> None:
    flat = RunConfig().to_flower() | changes
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower(flat)
    assert key in err.value.message


# -- strategy stack --------------------------------------------------------------------------------
class _Proxy:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id


def _fitres(update: list[np.ndarray], n: int, site: str, **metrics) -> FitRes:
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(update), n, {"site": site, **metrics})


def _strategy(tmp_path: Path, *, secure: bool, mode: str = "sample-dp", strategy: str = "fedavg"):
    cfg = RunConfig.from_flower(
        RunConfig().to_flower() | {"secagg": secure, "privacy-mode": mode, "strategy": strategy, "num-sites": 3}
    )
    recorder = RunRecorder(tmp_path, config=cfg.to_dict(), privacy_mode=mode, site_names=["a", "b", "c"], secure_aggregation={})
    g = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    strat = build_strategy(cfg, initial_weights=g, num_sites=3, observer=recorder, update_bound=1.0, evaluate_fn=None)
    return strat, recorder, g


def test_plain_updates_are_averaged_into_weights_and_bad_ones_rejected(tmp_path: Path) -> None:
    strat, recorder, g = _strategy(tmp_path, secure=False)
    d1 = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    d2 = [np.full((2, 2), -0.4, np.float32), np.full(3, 0.4, np.float32)]
    hostile = [np.full((2, 2), np.inf, np.float32), np.zeros(3, np.float32)]
    results = [(_Proxy(1), _fitres(d1, 100, "a")), (_Proxy(2), _fitres(d2, 300, "b")), (_Proxy(3), _fitres(hostile, 50, "c"))]
    params, _ = strat.aggregate_fit(1, results, [])
    got = parameters_to_ndarrays(params)
    np.testing.assert_allclose(got[0], g[0] + (0.25 * 0.2 + 0.75 * -0.4), atol=1e-6)
    np.testing.assert_allclose(got[1], g[1] + (0.25 * 0.1 + 0.75 * 0.4), atol=1e-6)
    rejected = [e for e in recorder.rounds[1]["events"] if "rejected" in e]
    assert len(rejected) == 1 and rejected[0].startswith("update from c rejected before aggregation: "), rejected


def test_refused_site_is_recorded_and_left_out(tmp_path: Path) -> None:
    strat, recorder, g = _strategy(tmp_path, secure=False)
    d = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    zero = [np.zeros((2, 2), np.float32), np.zeros(3, np.float32)]
    results = [
        (_Proxy(1), _fitres(d, 100, "a", epsilon=1.0, delta=1e-4, epsilon_budget=8.0)),
        (_Proxy(2), _fitres(d, 100, "b", epsilon=1.0, delta=1e-4, epsilon_budget=8.0)),
        (_Proxy(3), _fitres(zero, 0, "c", refused="budget exhausted")),
    ]
    params, _ = strat.aggregate_fit(1, results, [])
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], g[0] + 0.2, atol=1e-6)
    assert recorder.privacy["sites"]["c"]["status"] == "budget exhausted"
    assert recorder.privacy["sites"]["a"]["epsilon"]["1"] == 1.0


def test_quorum_not_reached_keeps_the_model(tmp_path: Path) -> None:
    strat, recorder, _ = _strategy(tmp_path, secure=False)
    d = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    params, _ = strat.aggregate_fit(1, [(_Proxy(1), _fitres(d, 100, "a"))], [Exception("site b timed out")])
    assert params is None
    assert recorder.rounds[1]["quorum_not_reached"] == {"available": 1, "needed": 2}
    assert any("quorum not reached" in e for e in recorder.rounds[1]["events"])


def test_fedadam_state_survives_a_checkpoint(tmp_path: Path) -> None:
    strat, recorder, g = _strategy(tmp_path, secure=False, strategy="fedadam")
    d = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    params, _ = strat.aggregate_fit(1, [(_Proxy(1), _fitres(d, 100, "a")), (_Proxy(2), _fitres(d, 100, "b"))], [])
    assert [w.dtype for w in parameters_to_ndarrays(params)] == [w.dtype for w in g], "global model keeps float32"
    state = strat.optimizer_state()
    assert {"m_t", "v_t", "current_weights"} <= set(state)
    recorder.end_round(1, weights=parameters_to_ndarrays(params), optimizer_state=state)
    saved_state, weights, opt = load_checkpoint(tmp_path)
    assert saved_state["round"] == 1
    for a, b in zip(weights, parameters_to_ndarrays(params)):
        np.testing.assert_array_equal(a, b)
    fresh, _, _ = _strategy(tmp_path / "other", secure=False, strategy="fedadam")
    fresh.load_optimizer_state(opt)
    for a, b in zip(fresh.optimizer_state()["m_t"], state["m_t"]):
        np.testing.assert_array_equal(a, b)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [1]


class _Sites:
    """A client manager with `available` sites connected, none arriving."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.waited_for: list[tuple[int, int]] = []

    def wait_for(self, num_clients: int, timeout: int) -> bool:
        self.waited_for.append((num_clients, timeout))
        return self.available >= num_clients

    def num_available(self) -> int:
        return self.available


@pytest.mark.parametrize(
    ("available", "started", "note"),
    [(3, True, False), (2, True, True), (1, False, False)],
)
def test_wait_for_sites_waits_for_more_but_starts_with_the_quorum(available: int, started: bool, note: bool) -> None:
    from types import SimpleNamespace

    from server.workflow import MedfedWorkflow

    events: list[tuple[int, str]] = []
    recorder = SimpleNamespace(event=lambda rnd, text: events.append((rnd, text)))
    workflow = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=recorder, min_sites=2,
                              wait_for_sites=3, quorum_timeout=7.0)
    sites = _Sites(available)
    assert workflow._wait_for_sites(SimpleNamespace(client_manager=sites), 4) is started
    assert sites.waited_for == [(3, 7)], "one bounded wait, for all the sites asked for"
    assert bool(events) is note
    if note:
        assert events == [(4, "only 2 of the 3 sites waited for are connected after 7 s; starting the round with them")]


def test_wait_for_sites_defaults_to_min_sites() -> None:
    from types import SimpleNamespace

    from server.workflow import MedfedWorkflow

    workflow = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=None, min_sites=2,
                              quorum_timeout=5.0)
    sites = _Sites(1)
    assert workflow._wait_for_sites(SimpleNamespace(client_manager=sites), 1) is False
    assert sites.waited_for == [(2, 5)]
    fed = RunConfig.from_flower({"wait-for-sites": 3, "min-sites": 2}).federation
    configured = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=None, min_sites=fed.min_sites,
                                wait_for_sites=fed.wait_for_sites, quorum_timeout=5.0)
    assert configured.wait_for_sites == 3
    with pytest.raises(ConfigError, match="wait-for-sites"):
        RunConfig.from_flower({"wait-for-sites": -1})
