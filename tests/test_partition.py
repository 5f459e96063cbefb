"""Partitioners: deterministic, disjoint, complete, skewed as asked, and never a too-small site."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.datasets.partition import (
    mean_label_skew,
    partition_dirichlet,
    partition_iid,
    partition_quantity,
    stratified_split,
)
from common.errors import ConfigError, DataError


def _run(scheme: str, y: np.ndarray, num_sites: int, alpha: float, seed: int, min_size: int = 1):
    if scheme == "iid":
        return partition_iid(y, num_sites, seed, min_size=min_size)
    if scheme == "dirichlet":
        return partition_dirichlet(y, num_sites, alpha, seed, min_size=min_size)
    return partition_quantity(y, num_sites, alpha, seed, min_size=min_size)


def _labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=n)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["iid", "dirichlet", "quantity"]),
    n=st.integers(20, 400),
    num_classes=st.integers(1, 6),
    num_sites=st.integers(1, 8),
    alpha=st.sampled_from([0.3, 1.0, 10.0]),
    seed=st.integers(0, 2**31),
)
def test_partitions_are_disjoint_complete_and_deterministic(scheme, n, num_classes, num_sites, alpha, seed):
    y = _labels(n, num_classes, seed % 1000)
    try:
        parts = _run(scheme, y, num_sites, alpha, seed)
    except DataError as exc:  # allowed only as the documented refusal, with a fix
        assert "num-sites" in exc.fix
        return
    assert len(parts) == num_sites
    merged = np.concatenate(parts)
    assert len(merged) == n and set(merged.tolist()) == set(range(n))  # complete and disjoint
    assert all(len(p) >= 1 for p in parts)
    again = _run(scheme, y, num_sites, alpha, seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity"])
def test_seed_changes_the_partition(scheme):
    y = _labels(500, 3, 0)
    a, b = _run(scheme, y, 4, 1.0, seed=0), _run(scheme, y, 4, 1.0, seed=1)
    assert any(not np.array_equal(p, q) for p, q in zip(a, b))


def test_iid_sizes_are_even():
    parts = partition_iid(_labels(103, 2, 0), 4, seed=3)
    assert sorted(len(p) for p in parts) == [25, 26, 26, 26]


def test_dirichlet_small_alpha_is_more_skewed_than_large_alpha():
    y = _labels(3000, 5, 0)
    small = np.mean([mean_label_skew(partition_dirichlet(y, 5, 0.1, s), y) for s in range(5)])
    large = np.mean([mean_label_skew(partition_dirichlet(y, 5, 100.0, s), y) for s in range(5)])
    iid = np.mean([mean_label_skew(partition_iid(y, 5, s), y) for s in range(5)])
    assert small > 0.4 > 0.1 > large
    assert iid < 0.05


def test_quantity_skews_sizes_not_labels():
    y = _labels(4000, 2, 1)

    def size_spread(alpha: float) -> float:
        sizes = [np.std([len(p) for p in partition_quantity(y, 5, alpha, s)]) for s in range(5)]
        return float(np.mean(sizes))

    assert size_spread(0.5) > 5 * size_spread(100.0)
    parts = partition_quantity(y, 5, 0.5, seed=0)
    big = [p for p in parts if len(p) >= 200]
    assert big and mean_label_skew(big, y) < 0.06  # labels stay IID within each site


@pytest.mark.parametrize("scheme", ["dirichlet", "quantity"])
def test_min_size_is_respected(scheme):
    y = _labels(1000, 4, 2)
    unconstrained = [_run(scheme, y, 5, 0.5, seed, min_size=1) for seed in range(20)]
    assert min(len(p) for parts in unconstrained for p in parts) < 20  # the constraint does bite
    for seed in range(20):
        parts = _run(scheme, y, 5, 0.5, seed, min_size=20)
        assert min(len(p) for p in parts) >= 20


@pytest.mark.parametrize("scheme", ["dirichlet", "quantity"])
def test_impossible_min_size_raises_with_a_fix(scheme):
    y = _labels(300, 5, 0)
    with pytest.raises(DataError) as err:
        _run(scheme, y, 20, 0.01, seed=0, min_size=14)
    assert "raise alpha" in err.value.fix and "num-sites" in err.value.fix


def test_too_many_sites_for_the_data_raises_at_once():
    with pytest.raises(DataError, match="at least 10 examples") as err:
        partition_iid(_labels(50, 2, 0), 6, seed=0)
    assert "num-sites to at most 5" in err.value.fix


def test_bad_parameters_are_config_errors():
    y = _labels(100, 2, 0)
    with pytest.raises(ConfigError, match="alpha"):
        partition_dirichlet(y, 2, 0.0, seed=0)
    with pytest.raises(ConfigError, match="num-sites"):
        partition_iid(y, 0, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        partition_quantity(y, 2, 1.0, seed=-1)


def test_stratified_split_keeps_tiny_classes_in_training():
    y = np.array([0] * 292 + [1] * 177 + [2] * 10 + [3] * 19 + [4] * 2)
    train, val, test = stratified_split(y, (0.6, 0.2, 0.2), seed=0)
    assert len(train) + len(val) + len(test) == 500
    assert len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(val, test)) == 0
    assert set(y[train].tolist()) == {0, 1, 2, 3, 4}
    assert abs(len(test) - 100) <= 3


@given(n=st.integers(2, 60), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_stratified_holdout_never_leaves_a_split_empty(n, seed):
    y = np.zeros(n, dtype=np.int64)  # a one-class site
    train, test = stratified_split(y, (0.8, 0.2), seed=seed)
    assert len(train) >= 1 and len(test) >= 1 and len(train) + len(test) == n
