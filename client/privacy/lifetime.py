"""A site's lifetime privacy spending: every run's accountant history composed with RDP.

The hospital's promise is about its patients, not about a run name: three runs named a, b, c
on the same data spend one budget, not three. So the lifetime total composes *every* scope's
history in the ledger. Composition is done on Renyi-DP curves (not by adding per-run
epsilons, which is valid but far looser): the RDP of a subsampled Gaussian mechanism at a
fixed (noise multiplier, sample rate) is linear in the number of steps, so

    RDP_total(alpha) = sum over every (sigma, q, steps) of steps * RDP_one_step(sigma, q, alpha)

and epsilon is one conversion of that vector at the site's delta. The one-step curve is
cached per (sigma, q) (`RdpCurves`, stored in the ledger), so a composition over 20 runs
is a vector sum plus one conversion (well under a millisecond) instead of Opacus' `get_epsilon`, which recomputes every curve
(0.08-0.24 s per call).

The orders are Opacus' `RDPAccountant.DEFAULT_ALPHAS`, the one-step curve is Opacus' own
`compute_rdp` and the conversion to epsilon is Opacus' formula, so `run_epsilon(history)`
equals Opacus' RDP `get_epsilon` for that history (tests/test_lifetime.py checks all three).
Opacus is imported only to compute a curve not seen before: `medfed client status` and the
ClientApp's loading, which read the ledger, stay free of torch.
A scope accounted with PRV is still composed here with RDP: an RDP bound is a valid
(slightly looser, i.e. conservative) bound for the same mechanism, and PRV has no cheap,
exact composition across runs.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

HistoryItem = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps), as in Opacus

#: Opacus' `RDPAccountant.DEFAULT_ALPHAS` (importing them would import torch).
ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
_ORDERS = np.array(ORDERS)


class RdpCurves:
    """One-step RDP curves per (noise multiplier, sample rate), computed once and kept.

    Opacus' `compute_rdp` costs 35-275 ms per pair; everything else in a composition is a
    vector sum. The ClientApp may run in a fresh process for every message, so an in-process
    cache alone would pay that again each round: the ledger stores the curves it has seen
    (`to_json`) and hands them back (`from_json`), so a round pays `compute_rdp` only for a
    (sigma, q) pair it has never used.
    """

    def __init__(self, curves: Mapping[tuple[float, float], Sequence[float]] | None = None) -> None:
        self._curves: dict[tuple[float, float], np.ndarray] = {}
        for key, curve in (curves or {}).items():
            self._curves[(float(key[0]), float(key[1]))] = _frozen(curve)

    def one_step(self, noise_multiplier: float, sample_rate: float) -> np.ndarray:
        key = (float(noise_multiplier), float(sample_rate))
        if key not in self._curves:
            from opacus.accountants.analysis.rdp import compute_rdp  # torch: only for a new pair

            self._curves[key] = _frozen(compute_rdp(q=key[1], noise_multiplier=key[0], steps=1, orders=list(ORDERS)))
        return self._curves[key]

    def absorb(self, other: "RdpCurves") -> "RdpCurves":
        """Add the curves `other` has and this one lacks; returns self."""
        for key, curve in other._curves.items():
            self._curves.setdefault(key, curve)
        return self

    def curve(self, histories: Iterable[Sequence[HistoryItem]]) -> np.ndarray:
        """The composed RDP curve (one value per order in ORDERS) of every step in `histories`."""
        total = np.zeros(len(ORDERS))
        for history in histories:
            for sigma, q, steps in history:
                if steps:
                    total += steps * self.one_step(sigma, q)
        return total

    def to_json(self) -> list[list]:
        """[[sigma, q, [rdp per order]], ...]: what the ledger stores."""
        return [[s, q, [float(x) for x in c]] for (s, q), c in sorted(self._curves.items())]

    @classmethod
    def from_json(cls, raw: object) -> "RdpCurves":
        """Inverse of `to_json`; anything malformed raises ValueError (the ledger makes it a DataError)."""
        if not isinstance(raw, list):
            raise ValueError("rdp curves are not a list")
        curves: dict[tuple[float, float], Sequence[float]] = {}
        for item in raw:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], list)
                    and len(item[2]) == len(ORDERS)):
                raise ValueError(f"an rdp curve is not [sigma, q, [{len(ORDERS)} values]]")
            curves[(float(item[0]), float(item[1]))] = [float(x) for x in item[2]]
        return cls(curves)


def _frozen(curve: Sequence[float]) -> np.ndarray:
    out = np.array(curve, dtype=float)
    out.flags.writeable = False  # shared between compositions
    return out


#: Curves for callers that pass none (benchmarks, tests, one-off checks): kept for the process.
PROCESS_CURVES = RdpCurves()


def epsilon_of(curve: np.ndarray, delta: float) -> float:
    """Epsilon at `delta` of an RDP curve; 0 for a curve of no steps.

    Opacus' `get_privacy_spent` conversion, without its "optimal order is the largest alpha"
    warning: the bound is then valid, only looser (conservative)."""
    if not np.any(curve):
        return 0.0
    eps = curve - (np.log(delta) + np.log(_ORDERS)) / (_ORDERS - 1) + np.log((_ORDERS - 1) / _ORDERS)
    return math.inf if np.isnan(eps).all() else float(np.nanmin(eps))


def composed_epsilon(
    histories: Iterable[Sequence[HistoryItem]], delta: float, curves: RdpCurves | None = None
) -> float:
    """Epsilon at `delta` of every history composed (the site's lifetime spending)."""
    return epsilon_of((curves or PROCESS_CURVES).curve(histories), delta)


def run_epsilon(history: Sequence[HistoryItem], delta: float, curves: RdpCurves | None = None) -> float:
    """One run's RDP epsilon: Opacus' `RDPAccountant.get_epsilon` from the cached curves, so the
    private trainer's before-training projection costs microseconds, not a tenth of a second."""
    return composed_epsilon([history], delta, curves)


def projected_total(
    histories: Mapping[str, Sequence[HistoryItem]],
    run_name: str,
    extra_history: Sequence[HistoryItem],
    delta: float,
    curves: RdpCurves | None = None,
) -> float:
    """The lifetime epsilon if run `run_name` took the steps in `extra_history` on top of what
    `histories` (the ledger's `histories()`) records: what the trainer checks against
    total-epsilon before any gradient. `run_name` may be a run not in the ledger yet."""
    others = [h for name, h in histories.items() if name != run_name]
    own = list(histories.get(run_name, ())) + list(extra_history)
    return composed_epsilon([*others, own], delta, curves)
