"""From a `DataConfig` to the federation's sites: load a built-in dataset, partition it.

* ``partition = "natural"``: the dataset's own hospitals (Fed-Heart-Disease only).
* ``iid`` / ``dirichlet`` / ``quantity``: the pooled *training* rows are partitioned into
  ``site-0 .. site-{n-1}``; each site holds out a stratified 20 % of its own rows as its test
  split (its local evaluation never sees other sites' data). The dataset's held-out test split
  (official test for PneumoniaMNIST, the seeded test split for ECG5000, the four hospitals'
  test rows for Heart-Disease) becomes ``central_test``, the operator's evaluation set.
  Validation splits stay unused. Nothing is normalised here (see `normalise_with_site_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.config import DataConfig
from common.datasets import builtin
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.partition import (
    partition_dirichlet,
    partition_iid,
    partition_quantity,
    stratified_split,
)
from common.errors import ConfigError

SITE_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a built-in dataset, without loading it."""

    modality: str
    default_partition: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    natural_sites: tuple[str, ...] = ()


BUILTIN_DATASETS: dict[str, DatasetInfo] = {
    "heart-disease": DatasetInfo(
        "tabular", "natural", (len(builtin.HEART_FEATURES),), 2, tuple(builtin.HEART_CLASSES),
        tuple(builtin.HEART_SITES),
    ),
    "pneumoniamnist": DatasetInfo("image", "dirichlet", (1, 28, 28), 2, tuple(builtin.PNEUMONIA_CLASSES)),
    "ecg5000": DatasetInfo(
        "signal", "dirichlet", (1, builtin.ECG5000_LENGTH), len(builtin.ECG5000_CLASSES),
        tuple(builtin.ECG5000_CLASSES),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Modality, input shape and classes of a built-in dataset (no file is read)."""
    if name not in BUILTIN_DATASETS:
        raise _unknown_dataset(name)
    return BUILTIN_DATASETS[name]


def load_federated(cfg: DataConfig, data_dir: str | Path | None = None) -> FederatedDataset:
    """The federation described by ``cfg`` (dataset, partition, num_sites, alpha, seed)."""
    problems = cfg.problems()
    if problems:
        raise ConfigError("Invalid data configuration:\n  - " + "\n  - ".join(problems),
                          "change the values above in the run configuration.")
    info = dataset_info(cfg.dataset)
    if cfg.partition == "natural":
        if not info.natural_sites:
            raise ConfigError(
                f"partition=natural needs a dataset with natural sites, but {cfg.dataset} has none.",
                "use partition=iid, dirichlet or quantity (or dataset=heart-disease).",
            )
        return builtin.load_heart_disease(data_dir)
    return partition_sites(_LOADERS[cfg.dataset](data_dir, cfg.seed), cfg)


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
    parts = PARTITIONERS[cfg.partition](y, cfg)
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
    )


# partition name -> (labels, config) -> index arrays, one per site
PARTITIONERS: dict[str, Callable[[np.ndarray, DataConfig], list[np.ndarray]]] = {
    "iid": lambda y, cfg: partition_iid(y, cfg.num_sites, cfg.seed),
    "dirichlet": lambda y, cfg: partition_dirichlet(y, cfg.num_sites, cfg.alpha, cfg.seed),
    "quantity": lambda y, cfg: partition_quantity(y, cfg.num_sites, cfg.alpha, cfg.seed),
}


_LOADERS: dict[str, Callable[[str | Path | None, int], FederatedDataset]] = {
    "heart-disease": lambda d, _seed: builtin.load_heart_disease(d),
    "pneumoniamnist": lambda d, _seed: builtin.load_pneumoniamnist(d),
    # the seed also fixes ECG5000's train/val/test split, so one number reproduces the run
    "ecg5000": lambda d, seed: builtin.load_ecg5000(d, seed=seed),
}


def _site_seed(seed: int, site: int) -> int:
    """An independent, reproducible seed per site for its test hold-out."""
    return int(np.random.SeedSequence([seed, site, 0x7E57]).generate_state(1)[0])


def _concat(splits: list[Split]) -> Split:
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


def _take(split: Split, idx: np.ndarray) -> Split:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return Split(split.x[index], split.y[index])


def _unknown_dataset(name: str) -> ConfigError:
    return ConfigError(
        f"dataset={name!r} is not a built-in dataset.",
        f"use one of: {', '.join(BUILTIN_DATASETS)} (or data-path + data-format for a hospital's own files).",
    )
