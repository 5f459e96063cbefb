"""The outermost layer of the server's strategy stack, around Flower's strategy.

Flower's strategies average whatever arrives. Before they do, this layer
  * asks the `UpdateGate` for each site's weights (bounded update decoded, checked) and keeps
    rejected sites and sites that refused to train out of the average;
  * skips the aggregation when fewer than `min_sites` updates remain (the quorum);
  * reports every result, rejection and missed quorum to the observer (the run's records);
  * hands the global model back in the model's own dtypes;
  * optionally publishes an exponential moving average of the aggregated models (`ema_decay`,
    `server-ema`): the sites keep training from the plain aggregate, while the model that is
    evaluated, chooses the operating point and is saved is the bias-corrected average of the
    rounds' aggregates. Under DP-SGD each round's aggregate carries fresh noise; averaging the
    iterates smooths it out (Polyak averaging; De et al. 2022 use an EMA of the weights). It
    reads only the aggregate, so it works under SecAgg+ and is post-processing: no privacy cost;
  * exposes the server optimiser's state (FedAdam moments, the EMA) for checkpoints.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from common.errors import ModelMismatchError
from common.updates import SERVER_ROUND_KEY, UPDATE_BOUND_KEY
from server.strategies.update_gate import UpdateGate

__all__ = ["GuardedStrategy", "RoundObserver"]

OPTIMIZER_STATE_KEYS = ("m_t", "v_t", "current_weights")  # FedAdam's moments and its weights
# The EMA's state: the plain aggregate the sites train from, the un-corrected average, its rounds.
EMA_STATE_KEYS = ("ema_train_weights", "ema_average", "ema_rounds")


class RoundObserver(Protocol):
    """What the strategy reports; implemented by server.records.RunRecorder."""

    def on_fit_results(self, server_round: int, site_metrics: list[tuple[int, dict]], failures: list[str]) -> None: ...

    def on_evaluate_results(self, server_round: int, site_metrics: list[tuple[int, float, dict]], failures: list[str]) -> None: ...

    def on_rejected_update(self, server_round: int, site: str, reason: str) -> None: ...

    def quorum_not_reached(self, server_round: int, *, available: int, needed: int) -> None: ...


class GuardedStrategy(Strategy):
    """See the module docstring; `inner` is Flower's strategy (possibly wrapped for client-level DP)."""

    def __init__(
        self,
        inner: Strategy,
        *,
        initial_weights: list[np.ndarray],
        gate: UpdateGate,
        observer: RoundObserver,
        min_sites: int,
        evaluate_config: Callable[[], dict[str, Scalar]] | None = None,
        ema_decay: float = 0.0,
    ) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay} must be in [0, 1) (0: no moving average)")
        self.inner = inner
        self.ema_decay = ema_decay
        self.train_weights: list[np.ndarray] | None = None  # what the sites train from (EMA on)
        self.ema_average: list[np.ndarray] | None = None
        self.ema_rounds = 0
        # The round's operating point (threshold, temperature) for the sites' test evaluation.
        self.evaluate_config = evaluate_config
        self.global_weights = [np.asarray(w) for w in initial_weights]
        self.gate = gate
        self.observer = observer
        self.min_sites = min_sites

    # -- setup ---------------------------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return ndarrays_to_parameters(self.global_weights)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if self.train_weights is not None:
            # `parameters` is the published average; the sites continue from the plain aggregate,
            # and their updates are decoded against what they were sent.
            parameters = ndarrays_to_parameters(self.train_weights)
        self.global_weights = parameters_to_ndarrays(parameters)
        instructions = self.inner.configure_fit(server_round, parameters, client_manager)
        for _, ins in instructions:
            ins.config[UPDATE_BOUND_KEY] = float(self.gate.update_bound)
            ins.config[SERVER_ROUND_KEY] = int(server_round)
        return instructions

    # -- aggregation ---------------------------------------------------------------------
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        results = _in_site_order(results)
        accepted = self._admitted(server_round, results)
        self.observer.on_fit_results(
            server_round,
            [(res.num_examples, dict(res.metrics)) for _, res in results],
            [_describe_failure(f) for f in failures],
        )
        if len(accepted) < self.min_sites:
            self.observer.quorum_not_reached(server_round, available=len(accepted), needed=self.min_sites)
            return None, {}
        params, metrics = self.inner.aggregate_fit(server_round, accepted, failures)
        if params is None:
            return None, metrics
        weights = self._in_model_dtypes(parameters_to_ndarrays(params))
        if self.ema_decay > 0:
            weights = self._moving_average(weights)
        return ndarrays_to_parameters(weights), metrics

    def _moving_average(self, aggregate: list[np.ndarray]) -> list[np.ndarray]:
        """Record `aggregate` as the sites' next starting point; return the published model: the
        bias-corrected EMA of all aggregates so far (round r's aggregate weighs decay^(R - r)), in
        float64 and back in the model's dtypes. Integer arrays (counters) are published as they are."""
        d = self.ema_decay
        self.train_weights = aggregate
        new = [np.asarray(w, dtype=np.float64) for w in aggregate]
        if self.ema_average is None:
            self.ema_average = [(1 - d) * w for w in new]
        else:
            self.ema_average = [d * a + (1 - d) * w for a, w in zip(self.ema_average, new)]
        self.ema_rounds += 1
        correction = 1 - d**self.ema_rounds
        return [
            (a / correction).astype(w.dtype) if np.issubdtype(w.dtype, np.floating) else w
            for a, w in zip(self.ema_average, aggregate)
        ]

    def _admitted(self, server_round: int, results: list[tuple[ClientProxy, FitRes]]) -> list[tuple[ClientProxy, FitRes]]:
        """The results to average, their updates decoded into weights; rejections are reported."""
        accepted: list[tuple[ClientProxy, FitRes]] = []
        for proxy, res in results:
            if res.num_examples == 0:
                continue  # a site that refused to train (budget): recorded, not averaged
            site = str(res.metrics.get("site", proxy.node_id))
            try:
                weights = self.gate.admit(parameters_to_ndarrays(res.parameters), self.global_weights, site=site)
            except ModelMismatchError as err:
                self.observer.on_rejected_update(server_round, site, err.problem)
                continue
            accepted.append((proxy, _with_parameters(res, ndarrays_to_parameters(weights))))
        return accepted

    def _in_model_dtypes(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        # Server optimisers (FedAdam) and DP noise compute in float64: the global model keeps the
        # model's own dtypes, or every site would (rightly) refuse it.
        return [np.asarray(w).astype(np.asarray(g).dtype, copy=False) for w, g in zip(weights, self.global_weights)]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        instructions = self.inner.configure_evaluate(server_round, parameters, client_manager)
        if self.evaluate_config is None:
            return instructions
        extra = self.evaluate_config()
        return [(proxy, EvaluateIns(ins.parameters, {**ins.config, **extra})) for proxy, ins in instructions]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        results = _in_site_order(results)
        self.observer.on_evaluate_results(
            server_round,
            [(res.num_examples, float(res.loss), dict(res.metrics)) for _, res in results],
            [_describe_failure(f) for f in failures],
        )
        released = [(proxy, res) for proxy, res in results if res.num_examples > 0]  # not the withheld
        if not released:
            return None, {}
        return self.inner.aggregate_evaluate(server_round, released, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)

    # -- state for checkpoints -------------------------------------------------------------
    def optimizer_state(self) -> dict[str, Any]:
        """Server-optimiser state (FedAdam moments, the EMA) to checkpoint; empty for plain FedAvg/FedProx."""
        base = _base_strategy(self.inner)
        state: dict[str, Any] = {}
        for key in OPTIMIZER_STATE_KEYS:
            value = getattr(base, key, None)
            if value is not None:
                state[key] = [np.asarray(v) for v in value]
        if self.train_weights is not None and self.ema_average is not None:
            state["ema_train_weights"] = [np.asarray(w) for w in self.train_weights]
            state["ema_average"] = [np.asarray(a) for a in self.ema_average]
            state["ema_rounds"] = [np.asarray(self.ema_rounds)]
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        base = _base_strategy(self.inner)
        for key, value in state.items():
            if key in EMA_STATE_KEYS:
                continue
            setattr(base, key, [np.asarray(v) for v in value])
        if "ema_average" in state:
            self.train_weights = [np.asarray(w) for w in state["ema_train_weights"]]
            self.ema_average = [np.asarray(a, dtype=np.float64) for a in state["ema_average"]]
            self.ema_rounds = int(np.asarray(state["ema_rounds"][0]))


def _base_strategy(strategy: Strategy) -> Strategy:
    while hasattr(strategy, "strategy") and isinstance(getattr(strategy, "strategy"), Strategy):
        strategy = strategy.strategy  # unwrap Flower's DP wrapper
    return strategy


def _in_site_order(results: list) -> list:
    """Replies sorted by site name: they arrive in whatever order the sites finish, and float
    sums in that order differ in the last bits, so a seeded simulation would not repeat."""
    return sorted(results, key=lambda pair: (str(pair[1].metrics.get("site", "")), pair[0].node_id))


def _with_parameters(res: FitRes, parameters: Parameters) -> FitRes:
    return FitRes(status=res.status, parameters=parameters, num_examples=res.num_examples, metrics=res.metrics)


def _describe_failure(failure: Any) -> str:
    if isinstance(failure, BaseException):
        return str(failure) or type(failure).__name__
    _proxy, res = failure
    return f"{res.status.code.name}: {res.status.message}"
