"""SecAgg+ setup (Flower's `SecAggPlusWorkflow`), with ranges derived so aggregates are exact.

How the numbers fit together (see flwr's secaggplus_mod / workflow):
  * each site multiplies its update by ``ratio = num_examples / max_weight`` (<= 1), clips every
    value to ``[-clipping_range, clipping_range]`` and quantises it to ``[0, quantization_range)``;
  * the server sums the masked integers modulo ``modulus_range`` and divides by the summed ratios.
So the aggregate is exact up to quantisation error iff (a) no value is ever clipped — sites send
updates bounded in L-infinity by the same number we use as ``clipping_range`` (the privacy
mode's `update_bound`: the DP clipping norm under client-level DP, whose L2 bound implies it;
`secagg-update-bound` otherwise), and
(b) the sum cannot wrap around the modulus — ``quantization_range * (num_sites + 1) <= modulus``.
Within that, the largest power-of-two ``quantization_range`` gives the finest quantisation step
``2 * clipping_range / quantization_range`` per site.

This module and client/mods.py are the only places that touch Flower's legacy SecAgg+ API.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.server.workflow import SecAggPlusWorkflow

from common.config import PrivacyConfig, SecAggConfig
from common.errors import ConfigError
from common.privacy import privacy_mode

MODULUS_RANGE = 2**32
# Flower quantises with int32 stochastic rounding: values must stay below 2**31.
MAX_QUANTIZATION_RANGE = 2**30


@dataclass(frozen=True)
class SecAggSettings:
    num_shares: int
    reconstruction_threshold: int
    clipping_range: float
    quantization_range: int
    modulus_range: int
    max_weight: float

    @property
    def quantization_step(self) -> float:
        """Largest error one site's value can carry after quantisation (before weighting)."""
        return 2 * self.clipping_range / self.quantization_range

    def to_dict(self) -> dict:
        return {
            "protocol": "SecAgg+ (Flower SecAggPlusWorkflow + secaggplus_mod)",
            "num_shares": self.num_shares,
            "reconstruction_threshold": self.reconstruction_threshold,
            "clipping_range": self.clipping_range,
            "quantization_range": self.quantization_range,
            "modulus_range": self.modulus_range,
            "max_weight": self.max_weight,
            "quantization_step": self.quantization_step,
        }


def secagg_settings(
    secagg: SecAggConfig, privacy: PrivacyConfig, *, num_sites: int, largest_site: int
) -> SecAggSettings:
    """Derive protocol ranges for `num_sites` sites, the largest holding `largest_site` examples."""
    if num_sites < 2:
        raise ConfigError(
            "Secure aggregation needs at least 2 sites per round.",
            "add sites, or turn secure aggregation off explicitly (--no-secagg / secagg=false).",
        )
    slots = 1 << (num_sites + 1 - 1).bit_length()  # next power of two >= num_sites + 1
    quantization_range = min(MAX_QUANTIZATION_RANGE, MODULUS_RANGE // slots)
    max_weight = secagg.max_weight if secagg.max_weight > 0 else float(max(largest_site, 1))
    num_shares = min(secagg.num_shares, num_sites)
    threshold = min(secagg.reconstruction_threshold, num_shares - 1)
    if num_shares <= 2 or threshold < 2:
        raise ConfigError(
            f"SecAgg+ needs at least 3 shares and a threshold of 2; with {num_sites} sites that is impossible.",
            "run with at least 3 sites, or turn secure aggregation off explicitly (--no-secagg).",
        )
    return SecAggSettings(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        clipping_range=privacy_mode(privacy.mode).update_bound(secagg, privacy),
        quantization_range=quantization_range,
        modulus_range=MODULUS_RANGE,
        max_weight=max_weight,
    )


def secagg_workflow(settings: SecAggSettings, *, timeout: float) -> SecAggPlusWorkflow:
    return SecAggPlusWorkflow(
        num_shares=settings.num_shares,
        reconstruction_threshold=settings.reconstruction_threshold,
        max_weight=settings.max_weight,
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        modulus_range=settings.modulus_range,
        timeout=timeout,
    )
