"""From a `DataConfig` to the federation's sites: load a built-in dataset, partition it.

* ``partition = "natural"``: the dataset's own hospitals (`DatasetInfo.natural_sites`; of the
  built-in datasets, Fed-Heart-Disease has them).
* ``iid`` / ``dirichlet`` / ``quantity``: the pooled *training* rows are partitioned into
  ``site-0 .. site-{n-1}``; each site holds out a stratified 20 % of its own rows as its test
  split (its local evaluation never sees other sites' data). The dataset's held-out test split
  (official test for PneumoniaMNIST, the seeded test split for ECG5000, the four hospitals'
  test rows for Heart-Disease) becomes ``central_test``, the operator's evaluation set.
  The dataset's validation split (official or seeded) becomes ``central_val``; each site's own
  validation split is carved later from its training rows (`common.datasets.selection`). Nothing is normalised here (see `normalise_with_site_stats`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.config import DataConfig
from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.builtin.base import BuiltinDataset
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.partition import (
    partition_dirichlet,
    partition_iid,
    partition_quantity,
    stratified_split,
)
from common.errors import ConfigError
from common.registry import Registry

SITE_TEST_FRACTION = 0.2


def load_federated(cfg: DataConfig, data_dir: str | Path | None = None) -> FederatedDataset:
    """The federation described by ``cfg`` (dataset, partition, num_sites, alpha, seed)."""
    problems = cfg.problems()
    if problems:
        raise ConfigError("Invalid data configuration:\n  - " + "\n  - ".join(problems),
                          "change the values above in the run configuration.")
    dataset = BUILTIN_DATASETS.get(cfg.dataset)
    if cfg.partition == "natural":
        return _natural_sites(dataset, data_dir, cfg.seed, cfg)
    return partition_sites(_load(dataset, data_dir, cfg.seed, cfg), cfg)


def _load(dataset: BuiltinDataset, data_dir: str | Path | None, seed: int, cfg: DataConfig | None) -> FederatedDataset:
    """``dataset.load``, telling a text dataset the run's tokeniser (max-tokens, hash-buckets)."""
    if dataset.info.modality == "text" and cfg is not None:
        from common.datasets.tokenise import Tokeniser

        tokeniser = Tokeniser(cfg.max_tokens, cfg.hash_buckets)
        return dataset.load(data_dir, seed, tokeniser=tokeniser)  # type: ignore[call-arg]
    return dataset.load(data_dir, seed)


def _natural_sites(
    dataset: BuiltinDataset, data_dir: str | Path | None = None, seed: int = 0, cfg: DataConfig | None = None
) -> FederatedDataset:
    """``dataset`` with its own hospitals as sites; a ConfigError when it has none."""
    if not dataset.info.natural_sites:
        with_sites = [name for name, d in BUILTIN_DATASETS.items() if d.info.natural_sites]
        raise ConfigError(
            f"partition=natural needs a dataset with natural sites, but {dataset.name} has none.",
            f"use partition={', '.join(PARTITIONERS)} to split it into virtual sites, "
            f"or a dataset with natural sites: {', '.join(with_sites)}.",
        )
    return _load(dataset, data_dir, seed, cfg)


def partition_sites(dataset: FederatedDataset, cfg: DataConfig) -> FederatedDataset:
    """Pool ``dataset``'s training rows and partition them into ``site-0 .. site-{n-1}``.

    Each site's test split is a stratified 20 % hold-out of its own partition. The result's
    ``central_test`` is ``dataset.central_test``, or else all of its sites' test rows pooled
    (they are never given to a partitioned site). Works for any `FederatedDataset`, so a
    hospital export can be split into virtual sites the same way.
    """
    if cfg.partition not in PARTITIONERS:
        raise ConfigError(
            f"partition={cfg.partition!r} cannot split {dataset.name} into virtual sites.",
            f"use one of: {', '.join(PARTITIONERS)}.",
        )
    pool_train = _concat([s.train for s in dataset.sites.values()])
    central = dataset.central_test
    if central is None:  # e.g. heart-disease: the hospitals' own test rows, pooled
        central = _concat([s.test for s in dataset.sites.values()])
    y = pool_train.y.numpy()
    parts = PARTITIONERS.get(cfg.partition)(y, cfg)
    sites: dict[str, SiteData] = {}
    fractions = (1 - SITE_TEST_FRACTION, SITE_TEST_FRACTION)
    for i, idx in enumerate(parts):
        train_pos, test_pos = stratified_split(y[idx], fractions, seed=_site_seed(cfg.seed, i))
        name = f"site-{i}"
        sites[name] = SiteData(name, _take(pool_train, idx[train_pos]), _take(pool_train, idx[test_pos]))
    return FederatedDataset(
        name=dataset.name,
        modality=dataset.modality,
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        class_names=list(dataset.class_names),
        sites=sites,
        checksums=dict(dataset.checksums),
        central_test=central,
        central_val=dataset.central_val,
    )


# The virtual partitions: (labels, config) -> index arrays, one per site. Together with
# "natural" they are the values of the ``partition`` setting (common.config.PARTITIONS).
Partitioner = Callable[[np.ndarray, DataConfig], list[np.ndarray]]
PARTITIONERS: Registry[Partitioner] = Registry("virtual partition", setting="partition")
PARTITIONERS.register("iid", lambda y, cfg: partition_iid(y, cfg.num_sites, cfg.seed))
PARTITIONERS.register("dirichlet", lambda y, cfg: partition_dirichlet(y, cfg.num_sites, cfg.alpha, cfg.seed))
PARTITIONERS.register("quantity", lambda y, cfg: partition_quantity(y, cfg.num_sites, cfg.alpha, cfg.seed))


def _site_seed(seed: int, site: int) -> int:
    """An independent, reproducible seed per site for its test hold-out."""
    return int(np.random.SeedSequence([seed, site, 0x7E57]).generate_state(1)[0])


def _concat(splits: list[Split]) -> Split:
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


def _take(split: Split, idx: np.ndarray) -> Split:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return Split(split.x[index], split.y[index])
