"""A site's lifetime spending: every run's accountant history composed with RDP.

Stand-in (minimal) until the site-policy work lands its own version with per-scope caching:
RDP composes by adding the curves, so one `compute_rdp` per history item, summed over every
run, then one conversion to epsilon at the site's delta. Every history item is a subsampled
Gaussian mechanism, whichever accountant the run reported with, so this is a valid bound.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

History = Iterable[tuple[float, float, int]]  # (noise_multiplier, sample_rate, steps), as in Opacus


def composed_epsilon(histories: Iterable[History], delta: float) -> float:
    """Epsilon at `delta` of all `histories` (one per run) composed; 0.0 when nothing was spent."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    total = np.zeros(len(orders))
    for history in histories:
        for sigma, q, steps in history:
            total += rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)
    if not total.any():
        return 0.0
    eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=total, delta=delta)
    return float(eps)
