"""Fast unit tests of the federation pieces (no Ray): update codec, SecAgg+ ranges, the strategy
stack's decoding and rejection rules, run records and checkpoints, config defaults."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedProx
from flwr.common.secure_aggregation.quantization import dequantize, quantize

from common.config import NON_PRIVATE_LEARNING_RATE, PrivacyConfig, RunConfig, SecAggConfig
from common.registry import Registry
from common.errors import ConfigError, ModelMismatchError
from common.updates import check_arrays, decode_update, encode_update
from server.records import RunRecorder, load_checkpoint
from server.secure_aggregation import secagg_settings
from server import strategies
from server.strategies import STRATEGIES, build_strategy, check_strategy
from simulations.simulate import build_config

REPO = Path(__file__).resolve().parents[1]


# -- config ------------------------------------------------------------------------------------
def test_pyproject_defaults_are_the_config_defaults() -> None:
    flower_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert RunConfig.from_flower(flower_cfg) == RunConfig(), "pyproject [tool.flwr.app.config] drifted from RunConfig"
    assert set(flower_cfg) == set(RunConfig().to_flower()), "every knob must be in pyproject"


def test_build_config_takes_flower_keys_and_none_keeps_the_default(tmp_path: Path) -> None:
    cfg = build_config({"num-sites": 5, "privacy-mode": "none", "strategy": "fedprox", "epsilon": None,
                        "out-dir": str(tmp_path)})
    assert (cfg.data.num_sites, cfg.privacy.mode, cfg.federation.strategy) == (5, "none", "fedprox")
    assert cfg.privacy.epsilon == PrivacyConfig().epsilon and cfg.out_dir == str(tmp_path)
    assert cfg.training.learning_rate == NON_PRIVATE_LEARNING_RATE  # the same rule as `flwr run .`
    assert cfg == RunConfig.from_flower({"num-sites": 5, "privacy-mode": "none", "strategy": "fedprox",
                                         "out-dir": str(tmp_path)})


def test_build_config_refuses_other_spellings_and_unknown_strategies() -> None:
    with pytest.raises(ConfigError, match="data.num_sites"):
        build_config({"data.num_sites": 5})
    with pytest.raises(ConfigError, match="fedsgd"):
        build_config({"strategy": "fedsgd"})


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


def test_strategy_registry_names_every_builtin_strategy(tmp_path: Path) -> None:
    assert STRATEGIES.names() == ("fedavg", "fedprox", "fedadam")
    for name, flower_type in (("fedavg", FedAvg), ("fedprox", FedProx), ("fedadam", FedAdam)):
        strat, _, _ = _strategy(tmp_path / name, secure=False, strategy=name)
        assert type(strat.inner) is flower_type


def test_unknown_strategy_is_a_config_error_naming_the_known_ones(tmp_path: Path) -> None:
    cfg = RunConfig.from_flower({"strategy": "fedsgd"})  # common/ cannot know the server's strategies
    for refuse in (lambda: check_strategy("fedsgd"),
                   lambda: build_strategy(cfg, initial_weights=[np.zeros(2, np.float32)], num_sites=4,
                                          observer=None, update_bound=1.0, evaluate_fn=None)):
        with pytest.raises(ConfigError) as err:
            refuse()
        assert "strategy='fedsgd'" in err.value.problem
        assert all(name in err.value.problem and name in err.value.fix for name in STRATEGIES.names())


def test_a_registered_strategy_is_built_by_build_strategy(tmp_path: Path, monkeypatch) -> None:
    seen: list[tuple[RunConfig, dict]] = []

    def build_test(cfg: RunConfig, common: dict) -> FedAvg:
        seen.append((cfg, common))
        return FedAvg(**common)

    registry = Registry("strategy", setting="strategy")
    registry.register("test-strategy", build_test)
    monkeypatch.setattr(strategies, "STRATEGIES", registry)
    strat, _, _ = _strategy(tmp_path, secure=False, mode="client-dp", strategy="test-strategy")
    assert [cfg.federation.strategy for cfg, _ in seen] == ["test-strategy"]
    assert seen[0][1]["min_fit_clients"] == 2 and seen[0][1]["accept_failures"] is True
    assert isinstance(strat.inner, DifferentialPrivacyClientSideFixedClipping)  # the DP step still wraps it
    assert type(strat.inner.strategy) is FedAvg


def test_site_metrics_are_aggregated_with_the_example_weighted_mean(tmp_path: Path) -> None:
    strat, recorder, _ = _strategy(tmp_path, secure=False)
    fit = strat.inner.fit_metrics_aggregation_fn([(1, {"site": "a", "train_loss": 1.0}), (3, {"site": "b", "train_loss": 2.0})])
    assert fit == {"train_loss": pytest.approx(1.75)}
    recorder.on_evaluate_results(1, [(1, 0.5, {"site": "a", "auc": 0.6, "n": 1}), (3, 1.0, {"site": "b", "auc": 1.0, "n": 3})], [])
    assert recorder.rounds[1]["federated"] == {"loss": pytest.approx(0.875), "auc": pytest.approx(0.9), "num_examples": 4}


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


def test_recorder_documents_are_what_it_writes_and_listeners_are_passed_in(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    recorder = RunRecorder(tmp_path, config={"k": 1}, privacy_mode="sample-dp", site_names=["a"], secure_aggregation={},
                           listeners=[lambda kind, payload: events.append((kind, payload))])
    recorder.start_round(1)
    recorder.on_fit_results(1, [(10, {"site": "a", "epsilon": 0.5, "delta": 1e-4, "epsilon_budget": 8.0})], [])
    recorder.end_round(1, weights=None, optimizer_state=None)
    assert recorder.metrics_document() == json.loads((tmp_path / "metrics.json").read_text())
    assert recorder.privacy_document() == json.loads((tmp_path / "privacy.json").read_text())
    recorder.finished({"report": tmp_path / "report.html"})
    assert [kind for kind, _ in events] == ["round_start", "fit_done", "round_end", "finished"]
    assert events[-1][1] == {"out_dir": str(tmp_path), "files": {"report": str(tmp_path / "report.html")}}


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
