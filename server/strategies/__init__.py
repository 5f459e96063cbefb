"""The server's strategy stack, composed by wrapping (outermost first):

  GuardedStrategy  — each site's bounded update through the UpdateGate, the quorum, the records
                     (guarded.py, update_gate.py)
  the privacy mode's wrapper, if any (server/privacy/wrappers.py; client-level DP: Flower's
                     DifferentialPrivacyClientSideFixedClipping, noise added after secure aggregation)
  the configured strategy: one file per strategy, registered below in STRATEGIES

Adding a strategy is one file with a builder `(cfg, common) -> Strategy` (`common`: the keyword
arguments every Flower strategy here shares) and one registration line; `strategy = "<name>"`
is then valid everywhere the server checks it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from flwr.common import Scalar, ndarrays_to_parameters
from flwr.server.strategy import Strategy

from common.config import RunConfig
from common.metrics import weighted_mean
from common.registry import Registry
from common.updates import nbytes
from server.privacy.wrappers import wrap_for_privacy
from server.strategies.fedadam import build_fedadam
from server.strategies.fedavg import build_fedavg
from server.strategies.fedprox import build_fedprox
from server.strategies.guarded import GuardedStrategy, RoundObserver
from server.strategies.update_gate import UpdateGate

__all__ = [
    "STRATEGIES",
    "EvaluateFn",
    "GuardedStrategy",
    "RoundObserver",
    "StrategyBuilder",
    "UpdateGate",
    "build_strategy",
    "check_strategy",
]

StrategyBuilder = Callable[[RunConfig, dict[str, Any]], Strategy]
EvaluateFn = Callable[[int, list[np.ndarray], dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None]

STRATEGIES: Registry[StrategyBuilder] = Registry("strategy", setting="strategy")
STRATEGIES.register("fedavg", build_fedavg)
STRATEGIES.register("fedprox", build_fedprox)
STRATEGIES.register("fedadam", build_fedadam)


def check_strategy(name: str) -> None:
    """Refuse an unknown strategy with the registry's ConfigError. common/config.py cannot see
    the server's registry, so the server checks the name before it loads data or submits a run."""
    STRATEGIES.get(name)


def build_strategy(
    cfg: RunConfig,
    *,
    initial_weights: list[np.ndarray],
    num_sites: int,
    observer: RoundObserver,
    update_bound: float,
    evaluate_fn: EvaluateFn | None,
    evaluate_config: Callable[[], dict[str, Scalar]] | None = None,
) -> GuardedStrategy:
    """The whole stack for one run: the configured strategy, client-level DP, the guard."""
    builder = STRATEGIES.get(cfg.federation.strategy)
    fed = cfg.federation
    common: dict[str, Any] = dict(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=fed.min_sites,
        min_evaluate_clients=fed.min_sites,
        min_available_clients=fed.min_sites,
        evaluate_fn=evaluate_fn,
        initial_parameters=ndarrays_to_parameters(initial_weights),
        accept_failures=True,
        fit_metrics_aggregation_fn=weighted_mean,
        evaluate_metrics_aggregation_fn=weighted_mean,
    )
    inner = builder(cfg, common)
    inner = wrap_for_privacy(inner, cfg.privacy, num_sites=num_sites)
    gate = UpdateGate(
        update_bound=update_bound, secure=cfg.secagg.enabled, max_update_bytes=4 * nbytes(initial_weights) + 1024
    )
    return GuardedStrategy(inner, initial_weights=initial_weights, gate=gate, observer=observer, min_sites=fed.min_sites,
                           evaluate_config=evaluate_config, ema_decay=fed.server_ema)
