"""server/strategies/: the strategy registry and the stack's decoding, rejection and quorum
rules, and FedAdam's state across a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedProx

from common.config import RunConfig
from common.errors import ConfigError
from common.registry import Registry
from server import strategies
from server.records import RunRecorder, load_checkpoint
from server.strategies import STRATEGIES, build_strategy, check_strategy


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


def _ema_strategy(tmp_path: Path, decay: float, *, secure: bool = False):
    cfg = RunConfig.from_flower(RunConfig().to_flower() | {"secagg": secure, "num-sites": 3, "server-ema": decay})
    recorder = RunRecorder(tmp_path, config=cfg.to_dict(), privacy_mode="sample-dp", site_names=["a", "b", "c"],
                           secure_aggregation={})
    g = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    return build_strategy(cfg, initial_weights=g, num_sites=3, observer=recorder, update_bound=1.0, evaluate_fn=None), recorder, g


class _Clients:
    """A client manager handing out two proxies (enough for FedAvg's configure_fit)."""

    def __init__(self) -> None:
        self.proxies = [_Proxy(1), _Proxy(2)]

    def num_available(self) -> int:
        return 2

    def wait_for(self, num_clients: int, timeout: int) -> bool:
        return True

    def sample(self, num_clients, min_num_clients=None, criterion=None):
        return self.proxies[:num_clients]


def test_server_ema_publishes_the_average_and_sites_train_from_the_aggregate(tmp_path: Path) -> None:
    """With server-ema = 0.5, round 2 publishes (0.5 * A1 + A2) / 1.5 of the plain aggregates
    A1, A2, while round 2's sites are sent A1 (not the average) and their updates are decoded
    against A1; without the EMA the published model is the aggregate itself."""
    strat, _, g = _ema_strategy(tmp_path, 0.5)
    d1 = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    d2 = [np.full((2, 2), -0.4, np.float32), np.full(3, 0.3, np.float32)]
    two = lambda d: [(_Proxy(1), _fitres(d, 100, "a")), (_Proxy(2), _fitres(d, 100, "b"))]  # noqa: E731
    p1, _ = strat.aggregate_fit(1, two(d1), [])
    a1 = [w + d for w, d in zip(g, d1)]
    for got, want in zip(parameters_to_ndarrays(p1), a1):  # one round: the correction makes it A1
        np.testing.assert_allclose(got, want, atol=1e-6)
    published = ndarrays_to_parameters([w + 10 for w in a1])  # stands for "not the aggregate"
    sent = strat.configure_fit(2, published, _Clients())
    for got, want in zip(parameters_to_ndarrays(sent[0][1].parameters), a1):
        np.testing.assert_allclose(got, want, atol=1e-6)
    p2, _ = strat.aggregate_fit(2, two(d2), [])
    a2 = [w + d for w, d in zip(a1, d2)]
    got = parameters_to_ndarrays(p2)
    for w, x, y in zip(got, a1, a2):
        np.testing.assert_allclose(w, (0.5 * 0.5 * x + 0.5 * y) / (1 - 0.25), atol=1e-6)
        assert not np.allclose(w, y), "the published model must differ from the plain aggregate"
    assert [w.dtype for w in got] == [w.dtype for w in g]

    plain, _, _ = _ema_strategy(tmp_path / "plain", 0.0)
    plain.aggregate_fit(1, two(d1), [])
    plain.configure_fit(2, ndarrays_to_parameters(a1), _Clients())
    for w, y in zip(parameters_to_ndarrays(plain.aggregate_fit(2, two(d2), [])[0]), a2):
        np.testing.assert_allclose(w, y, atol=1e-6)


def test_server_ema_state_survives_a_checkpoint(tmp_path: Path) -> None:
    strat, recorder, g = _ema_strategy(tmp_path, 0.8)
    d = [np.full((2, 2), 0.2, np.float32), np.full(3, 0.1, np.float32)]
    results = [(_Proxy(1), _fitres(d, 100, "a")), (_Proxy(2), _fitres(d, 100, "b"))]
    params, _ = strat.aggregate_fit(1, results, [])
    recorder.end_round(1, weights=parameters_to_ndarrays(params), optimizer_state=strat.optimizer_state())
    _, _, opt = load_checkpoint(tmp_path)
    fresh, _, _ = _ema_strategy(tmp_path / "other", 0.8)
    fresh.load_optimizer_state(opt)
    assert fresh.ema_rounds == 1
    for a, b in zip(fresh.train_weights, strat.train_weights):
        np.testing.assert_array_equal(a, b)
    # the next round continues the same average in both
    d2 = [np.full((2, 2), -0.1, np.float32), np.full(3, 0.2, np.float32)]
    for s in (strat, fresh):
        s.configure_fit(2, params, _Clients())
    nxt = [(_Proxy(1), _fitres(d2, 100, "a")), (_Proxy(2), _fitres(d2, 100, "b"))]
    for a, b in zip(parameters_to_ndarrays(strat.aggregate_fit(2, nxt, [])[0]),
                    parameters_to_ndarrays(fresh.aggregate_fit(2, nxt, [])[0])):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_server_ema_outside_zero_to_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower({"server-ema": 1.0})
    assert "server-ema=1.0" in str(err.value)


def test_the_benchmark_replay_publishes_what_the_server_ema_publishes(tmp_path: Path) -> None:
    """benchmarks/ema_replay.py scores decays offline from a run's plain aggregates; its EMA must
    be the model GuardedStrategy publishes after the same rounds, or the replay measures nothing."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ema_replay import ema

    strat, _, g = _ema_strategy(tmp_path, 0.6)
    rng = np.random.default_rng(0)
    aggregates, published = [], None
    for rnd in (1, 2, 3):
        d = [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in g]
        strat.configure_fit(rnd, ndarrays_to_parameters(g), _Clients())
        base = strat.global_weights
        results = [(_Proxy(1), _fitres(d, 100, "a")), (_Proxy(2), _fitres(d, 100, "b"))]
        published = parameters_to_ndarrays(strat.aggregate_fit(rnd, results, [])[0])
        aggregates.append([w + x for w, x in zip(base, d)])
    for a, b in zip(published, ema(aggregates, 0.6)):
        np.testing.assert_allclose(a, b, atol=1e-6)
