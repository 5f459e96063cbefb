"""Split a pooled dataset into virtual hospitals, reproducibly.

Datasets without natural sites (PneumoniaMNIST, ECG5000) are partitioned to simulate a
federation. Three schemes cover the usual experiments:

* ``iid``: a shuffled, even split (the easy baseline);
* ``dirichlet``: label skew, each class spread over sites by a Dirichlet(alpha) draw
  (Hsu et al. 2019); small alpha = few classes per site;
* ``quantity``: size skew, site sizes from one Dirichlet(alpha) draw, labels IID within.

Everything is a function of ``seed`` only, so a run can be reproduced from its config. A site
that is too small to train on is re-drawn a bounded number of times with derived seeds
(``(seed, attempt)``) and then refused with an error that says what to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Sequence

import numpy as np

from common.errors import ConfigError, DataError

MIN_SITE_EXAMPLES = 10  # enough for a non-empty 20 % test hold-out and a few training batches
MAX_ATTEMPTS = 100
# (labels, num_sites, alpha, rng) -> one candidate partition, index arrays per site
Draw = Callable[[np.ndarray, int, float, np.random.Generator], list[np.ndarray]]


def partition_iid(
    y: np.ndarray, num_sites: int, seed: int, min_size: int = MIN_SITE_EXAMPLES
) -> list[np.ndarray]:
    """Shuffle and cut into ``num_sites`` near-equal parts; returns sorted index arrays."""
    y = _check(y, num_sites, seed, min_size)
    rng = np.random.default_rng(seed)
    return [np.sort(p) for p in np.array_split(rng.permutation(len(y)), num_sites)]


def _redrawn(scheme: str, draw: Draw) -> Callable[..., list[np.ndarray]]:
    """A skewed partitioner from one random ``draw``: re-drawn with seeds ``(seed, attempt)``
    until every site has ``min_size`` examples, then refused (the loop both skews share)."""

    def partition(
        y: np.ndarray,
        num_sites: int,
        alpha: float,
        seed: int,
        min_size: int = MIN_SITE_EXAMPLES,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> list[np.ndarray]:
        y = _check(y, num_sites, seed, min_size, alpha)
        for attempt in range(max_attempts):
            parts = draw(y, num_sites, alpha, np.random.default_rng([seed, attempt]))
            if min(len(p) for p in parts) >= min_size:
                return parts
        raise _too_small(scheme, len(y), num_sites, alpha, min_size, max_attempts)

    partition.__name__ = partition.__qualname__ = f"partition_{scheme}"
    partition.__doc__ = draw.__doc__
    return partition


def _dirichlet_draw(y: np.ndarray, num_sites: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Label skew: each class is divided among sites in Dirichlet(alpha) proportions."""
    chunks: list[list[np.ndarray]] = [[] for _ in range(num_sites)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        shares = rng.dirichlet(np.full(num_sites, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for site, part in enumerate(np.split(idx, cuts)):
            chunks[site].append(part)
    return [np.sort(np.concatenate(c)) for c in chunks]


def _quantity_draw(y: np.ndarray, num_sites: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Quantity skew: site sizes from Dirichlet(alpha) over sites, labels IID within each site."""
    sizes = _largest_remainder(rng.dirichlet(np.full(num_sites, alpha)), len(y))
    order = rng.permutation(len(y))
    return [np.sort(p) for p in np.split(order, np.cumsum(sizes)[:-1])]


partition_dirichlet = _redrawn("dirichlet", _dirichlet_draw)
partition_quantity = _redrawn("quantity", _quantity_draw)


def stratified_split(y: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices into parts of the given fractions, class by class.

    Unlike sklearn's ``train_test_split(stratify=...)``, which refuses classes with fewer than
    two members, this copes with tiny classes (ECG5000 has a class of 2) and one-class sites:
    the first part (training) keeps at least one example of every class, and every other part
    gets at least one example whenever there are enough to go round.
    """
    y = np.asarray(y).ravel()
    if not fractions or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions {list(fractions)} must be non-negative and sum to 1")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        counts = [math.floor(len(idx) * f + 0.5) for f in fractions[1:]]
        while sum(counts) > len(idx) - 1 and any(counts):  # training keeps one of each class
            counts[int(np.argmax(counts))] -= 1
        bounds = np.cumsum([len(idx) - sum(counts), *counts])[:-1]
        for k, part in enumerate(np.split(idx, bounds)):
            parts[k].append(part)
    out = [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]
    for k in range(1, len(out)):
        if len(out[k]) == 0 and len(out[0]) > 1 and fractions[k] > 0:
            # take one training example from its most frequent class
            train_labels = y[out[0]]
            common = np.flatnonzero(train_labels == np.bincount(train_labels).argmax())
            pick = common[rng.integers(len(common))]
            out[k] = out[0][[pick]]
            out[0] = np.delete(out[0], pick)
    return [np.sort(p).astype(np.int64) for p in out]


def mean_label_skew(parts: Sequence[np.ndarray], y: np.ndarray) -> float:
    """Mean total-variation distance between each site's label distribution and the pooled one
    (0 = every site looks like the whole, 1 = sites share no labels). For reports and tests."""
    y = np.asarray(y).ravel()
    k = int(y.max()) + 1
    pooled = np.bincount(y, minlength=k) / len(y)
    dists = [
        0.5 * np.abs(np.bincount(y[p], minlength=k) / len(p) - pooled).sum() for p in parts if len(p)
    ]
    return float(np.mean(dists))


def _largest_remainder(shares: np.ndarray, n: int) -> np.ndarray:
    """Integer sizes summing to ``n`` proportional to ``shares``."""
    raw = shares * n
    sizes = np.floor(raw).astype(int)
    short = n - sizes.sum()
    sizes[np.argsort(raw - sizes)[::-1][:short]] += 1
    return sizes


def _check(
    y: np.ndarray, num_sites: int, seed: int, min_size: int, alpha: float | None = None
) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.ravel()
    if int(num_sites) != num_sites or num_sites < 1:
        raise ConfigError(f"num-sites={num_sites} must be a whole number >= 1.", "set num-sites to e.g. 4.")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed={seed} must be a whole number >= 0.", "set seed to e.g. 0.")
    if alpha is not None and (not math.isfinite(alpha) or alpha <= 0):
        raise ConfigError(
            f"alpha={alpha} must be a positive number.",
            "set alpha to e.g. 1.0 (smaller = more skew, larger = closer to IID).",
        )
    if num_sites * max(min_size, 1) > len(y):
        raise DataError(
            f"{len(y)} training examples cannot give {num_sites} sites at least {min_size} examples each.",
            f"lower num-sites to at most {max(len(y) // max(min_size, 1), 1)}.",
        )
    return y


def _too_small(scheme: str, n: int, num_sites: int, alpha: float, min_size: int, attempts: int) -> DataError:
    return DataError(
        f"The {scheme} partition of {n} examples into {num_sites} sites with alpha={alpha} left a site "
        f"with fewer than {min_size} examples in each of {attempts} draws.",
        "raise alpha (e.g. alpha=1.0) or lower num-sites, or change the seed.",
    )
