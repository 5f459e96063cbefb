"""Seeded randomness for simulated hospitals, so `medfed simulate --seed S` is reproducible.

A simulated site draws random numbers in three places: Opacus' Poisson sampling of each
batch and its Gaussian noise (torch's default generator), shuffling without DP (torch), and
SecAgg+'s stochastic rounding when it quantises the update (numpy's global generator, in
`secaggplus_mod`, after training returns). Flower runs the sites in Ray worker processes in
an order that changes from run to run, so one seed per process is not enough: each site's
work in each round gets its own seed derived from (run seed, site, round, step), set just
before the work starts.

Deployed sites never get a seed: their DP noise must stay unpredictable to anyone, the
server included (the privacy guarantee assumes noise nobody can reproduce).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derived_seed(run_seed: int, site: str, server_round: int, step: str) -> int:
    """A 63-bit seed, stable across processes and Python versions (no `hash()`)."""
    text = f"medfed|{run_seed}|{site}|{server_round}|{step}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def seed_site_work(run_seed: int | None, site: str, server_round: int, step: str) -> None:
    """Seed torch, numpy and `random` for one site's step of one round; no-op without a seed."""
    if run_seed is None:
        return
    import torch

    seed = derived_seed(run_seed, site, server_round, step)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
