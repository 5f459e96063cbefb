"""FedAdam: the averaged update drives a server-side Adam step (`server-learning-rate`), whose
moments are checkpointed with the model (Reddi et al., 2021)."""

from __future__ import annotations

from typing import Any

from flwr.server.strategy import FedAdam, Strategy

from common.config import RunConfig

__all__ = ["build_fedadam"]


def build_fedadam(cfg: RunConfig, common: dict[str, Any]) -> Strategy:
    return FedAdam(eta=cfg.federation.server_learning_rate, eta_l=cfg.training.learning_rate, **common)
