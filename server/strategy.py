"""The server-side strategy stack, composed by wrapping (outermost first):

  UpdateDecodingStrategy  — sites send bounded updates (client/mods.py); turn the (securely
                            aggregated) update back into weights, check unprotected updates,
                            keep refused sites out, and tell the recorder what came in.
  DifferentialPrivacyClientSideFixedClipping (client-level DP only; Flower's wrapper: noise
                            is added to the aggregate, after secure aggregation)
  FedAvg | FedProx | FedAdam (Flower's strategies)
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
from flwr.server.strategy import (
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)

from common.config import RunConfig
from common.errors import ModelMismatchError
from common.updates import SERVER_ROUND_KEY, UPDATE_BOUND_KEY, check_arrays, decode_update, nbytes
from server.privacy_wrappers import wrap_for_privacy


class RoundObserver(Protocol):
    """What the strategy reports; implemented by server.records.RunRecorder."""

    def on_fit_results(self, server_round: int, site_metrics: list[tuple[int, dict]], failures: list[str]) -> None: ...

    def on_evaluate_results(self, server_round: int, site_metrics: list[tuple[int, float, dict]], failures: list[str]) -> None: ...

    def on_rejected_update(self, server_round: int, site: str, reason: str) -> None: ...

    def quorum_not_reached(self, server_round: int, *, available: int, needed: int) -> None: ...


EvaluateFn = Callable[[int, list[np.ndarray], dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None]


class UpdateDecodingStrategy(Strategy):
    """See module docstring. `secure` says whether results arrive securely aggregated (then every
    result carries the same aggregate and individual updates are never seen)."""

    def __init__(
        self,
        inner: Strategy,
        *,
        initial_weights: list[np.ndarray],
        update_bound: float,
        secure: bool,
        observer: RoundObserver,
        max_update_bytes: int,
        min_sites: int,
    ) -> None:
        self.inner = inner
        self.min_sites = min_sites
        self.global_weights = [np.asarray(w) for w in initial_weights]
        self.update_bound = update_bound
        self.secure = secure
        self.observer = observer
        self.max_update_bytes = max_update_bytes

    # -- setup ---------------------------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return ndarrays_to_parameters(self.global_weights)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.global_weights = parameters_to_ndarrays(parameters)
        instructions = self.inner.configure_fit(server_round, parameters, client_manager)
        for _, ins in instructions:
            ins.config[UPDATE_BOUND_KEY] = float(self.update_bound)
            ins.config[SERVER_ROUND_KEY] = int(server_round)
        return instructions

    # -- aggregation ---------------------------------------------------------------------
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        failure_notes = [_describe_failure(f) for f in failures]
        results = _in_site_order(results)
        accepted: list[tuple[ClientProxy, FitRes]] = []
        for proxy, res in results:
            site = str(res.metrics.get("site", proxy.node_id))
            if res.num_examples == 0:
                continue  # a site that refused to train (budget): recorded, not averaged
            try:
                delta = parameters_to_ndarrays(res.parameters)
                if self.secure and len(delta) == len(self.global_weights):
                    # SecAgg+ dequantises to float64; compare against the model's own dtypes.
                    delta = [np.asarray(d).astype(np.asarray(g).dtype) for d, g in zip(delta, self.global_weights)]
                if not self.secure:
                    if nbytes(delta) > self.max_update_bytes:
                        raise ModelMismatchError(
                            f"update of {nbytes(delta)} bytes exceeds the limit of {self.max_update_bytes} bytes.",
                            "the site is misconfigured or hostile.",
                        )
                    check_arrays(delta, self.global_weights, what=f"update from {site}", max_abs=self.update_bound * (1 + 1e-6))
                else:
                    check_arrays(delta, self.global_weights, what="securely aggregated update")
            except ModelMismatchError as err:
                self.observer.on_rejected_update(server_round, site, err.problem)
                continue
            weights = decode_update(self.global_weights, delta)
            accepted.append((proxy, _with_parameters(res, ndarrays_to_parameters(weights))))
        self.observer.on_fit_results(
            server_round, [(res.num_examples, dict(res.metrics)) for _, res in results], failure_notes
        )
        if len(accepted) < self.min_sites:
            self.observer.quorum_not_reached(server_round, available=len(accepted), needed=self.min_sites)
            return None, {}
        params, metrics = self.inner.aggregate_fit(server_round, accepted, failures)
        if params is None:
            return None, metrics
        # Server optimisers (FedAdam) and DP noise compute in float64: the global model keeps the
        # model's own dtypes, or every site would (rightly) refuse it.
        weights = [
            np.asarray(w).astype(np.asarray(g).dtype, copy=False)
            for w, g in zip(parameters_to_ndarrays(params), self.global_weights)
        ]
        return ndarrays_to_parameters(weights), metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

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
        return self.inner.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)

    # -- state for checkpoints -------------------------------------------------------------
    def optimizer_state(self) -> dict[str, Any]:
        """Server-optimiser state (FedAdam moments) to checkpoint; empty for FedAvg/FedProx."""
        base = _base_strategy(self.inner)
        state: dict[str, Any] = {}
        for key in ("m_t", "v_t", "current_weights"):
            value = getattr(base, key, None)
            if value is not None:
                state[key] = [np.asarray(v) for v in value]
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        base = _base_strategy(self.inner)
        for key, value in state.items():
            setattr(base, key, [np.asarray(v) for v in value])


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


def build_strategy(
    cfg: RunConfig,
    *,
    initial_weights: list[np.ndarray],
    num_sites: int,
    observer: RoundObserver,
    update_bound: float,
    evaluate_fn: EvaluateFn | None,
) -> UpdateDecodingStrategy:
    fed = cfg.federation
    initial = ndarrays_to_parameters(initial_weights)
    common: dict[str, Any] = dict(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=fed.min_sites,
        min_evaluate_clients=fed.min_sites,
        min_available_clients=fed.min_sites,
        evaluate_fn=evaluate_fn,
        initial_parameters=initial,
        accept_failures=True,
        fit_metrics_aggregation_fn=_numeric_weighted_mean,
        evaluate_metrics_aggregation_fn=_numeric_weighted_mean,
    )
    inner: Strategy
    if fed.strategy == "fedavg":
        inner = FedAvg(**common)
    elif fed.strategy == "fedprox":
        inner = FedProx(proximal_mu=cfg.training.proximal_mu, **common)
    else:  # fedadam (validated by RunConfig)
        inner = FedAdam(eta=fed.server_learning_rate, eta_l=cfg.training.learning_rate, **common)
    inner = wrap_for_privacy(inner, cfg.privacy, num_sites=num_sites)
    return UpdateDecodingStrategy(
        inner,
        initial_weights=initial_weights,
        update_bound=update_bound,
        secure=cfg.secagg.enabled,
        observer=observer,
        max_update_bytes=4 * nbytes(initial_weights) + 1024,
        min_sites=fed.min_sites,
    )


def _numeric_weighted_mean(items: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Example-weighted mean of every numeric metric (site names and other strings are dropped)."""
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    for n, metrics in items:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and n > 0:
                totals[key] = totals.get(key, 0.0) + n * float(value)
                weights[key] = weights.get(key, 0.0) + n
    return {k: totals[k] / weights[k] for k in totals}
