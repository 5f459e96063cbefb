"""Which data a run uses: a built-in dataset (partitioned or natural sites) or a hospital path.

Both the server (model shape, central test split) and the sites (their own split) call
`load_run_dataset`; it is cached per process because a simulated site is asked for its data
every round.
"""

from __future__ import annotations

import functools
from pathlib import Path

from common.config import DataConfig
from common.datasets.datadir import resolve_data_dir
from common.datasets.contract import FederatedDataset, with_validation


def load_run_dataset(cfg: DataConfig, data_dir: str | Path | None = None) -> FederatedDataset:
    """The federated view of the run's data (not normalised: each site normalises its own).

    Every site carries its validation split (`validation-fraction` of its training rows, fixed
    by the seed): what a site trains on is its training split without those rows."""
    return _cached(cfg, str(resolve_data_dir(data_dir)))


@functools.lru_cache(maxsize=4)
def _cached(cfg: DataConfig, data_dir: str) -> FederatedDataset:
    ds = _load(cfg, data_dir)
    ds.sites = {name: with_validation(site, cfg.validation_fraction, cfg.seed) for name, site in ds.sites.items()}
    return ds


def _load(cfg: DataConfig, data_dir: str) -> FederatedDataset:
    if cfg.data_path:
        from common.datasets.federated import partition_sites
        from common.datasets.hospital import load_hospital

        ds = load_hospital(
            cfg.data_path,
            cfg.data_format,
            seed=cfg.seed,
            label_column=cfg.label_column,
            text_column=cfg.text_column,
            max_tokens=cfg.max_tokens,
            hash_buckets=cfg.hash_buckets,
        )
        if cfg.num_sites > 1 and cfg.partition != "natural":
            ds = partition_sites(ds, cfg)
        return ds
    from common.datasets.federated import load_federated

    return load_federated(cfg, Path(data_dir))
