"""FedProx: FedAvg whose sites add a proximal term (`proximal-mu`) that keeps skewed sites from
drifting far from the global model (Li et al., 2020)."""

from __future__ import annotations

from typing import Any

from flwr.server.strategy import FedProx, Strategy

from common.config import RunConfig

__all__ = ["build_fedprox"]


def build_fedprox(cfg: RunConfig, common: dict[str, Any]) -> Strategy:
    return FedProx(proximal_mu=cfg.training.proximal_mu, **common)
