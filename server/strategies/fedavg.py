"""FedAvg: the example-weighted average of the sites' models (McMahan et al., 2017)."""

from __future__ import annotations

from typing import Any

from flwr.server.strategy import FedAvg, Strategy

from common.config import RunConfig

__all__ = ["build_fedavg"]


def build_fedavg(cfg: RunConfig, common: dict[str, Any]) -> Strategy:
    return FedAvg(**common)
