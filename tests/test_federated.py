"""common/datasets/federated.py: load_federated gives every site train and test data, reproducibly."""

from __future__ import annotations

import pytest
import torch
from common.config import DataConfig
from common.datasets.builtin import BUILTIN_DATASETS, ecg5000, pneumoniamnist
from common.datasets.federated import load_federated
from common.errors import ConfigError, DataError

# ----------------------------------------------------------------- load_federated

@pytest.mark.parametrize("dataset", ["heart-disease", "pneumoniamnist", "ecg5000"])
@pytest.mark.parametrize("partition", ["iid", "dirichlet", "quantity"])
def test_load_federated_every_site_has_train_and_test(data_dir, dataset, partition):
    cfg = DataConfig(dataset=dataset, partition=partition, num_sites=4, alpha=0.5, seed=0)
    ds = load_federated(cfg, data_dir)
    assert ds.site_names() == ["site-0", "site-1", "site-2", "site-3"]
    for site in ds.sites.values():
        assert len(site.train) > 0 and len(site.test) > 0
        assert len(site.test) < len(site.train)
    pooled_train = {"heart-disease": 486, "pneumoniamnist": 4708, "ecg5000": 302}[dataset]
    assert sum(len(s.train) + len(s.test) for s in ds.sites.values()) == pooled_train
    assert ds.central_test is not None
    assert len(ds.central_test) == {"heart-disease": 254, "pneumoniamnist": 624, "ecg5000": 99}[dataset]
    info = BUILTIN_DATASETS.get(dataset).info
    assert (ds.modality, ds.input_shape, ds.num_classes) == (info.modality, info.input_shape, info.num_classes)
    assert ds.checksums


def test_load_federated_is_reproducible_and_seed_dependent(data_dir):
    cfg = DataConfig(dataset="ecg5000", partition="dirichlet", num_sites=3, alpha=1.0, seed=7)
    a, b = load_federated(cfg, data_dir), load_federated(cfg, data_dir)
    for name in a.sites:
        assert torch.equal(a.sites[name].train.x, b.sites[name].train.x)
        assert torch.equal(a.sites[name].test.y, b.sites[name].test.y)
    c = load_federated(DataConfig(dataset="ecg5000", partition="dirichlet", num_sites=3, alpha=1.0, seed=8), data_dir)
    assert [len(s.train) for s in c.sites.values()] != [len(s.train) for s in a.sites.values()]


def test_load_federated_natural_heart_disease(data_dir):
    ds = load_federated(DataConfig(dataset="heart-disease", partition="natural"), data_dir)
    assert ds.site_names() == ["cleveland", "hungary", "switzerland", "va"]


def test_load_federated_rejects_bad_choices(data_dir):
    with pytest.raises(ConfigError, match="natural") as err:
        load_federated(DataConfig(dataset="pneumoniamnist", partition="natural"), data_dir)
    assert "dirichlet" in err.value.fix and "heart-disease" in err.value.fix  # the datasets that have natural sites
    with pytest.raises(ConfigError) as err:
        load_federated(DataConfig(dataset="cifar10", partition="iid"), data_dir)
    assert "cifar10" in err.value.problem
    assert all(name in err.value.problem for name in ("heart-disease", "pneumoniamnist", "ecg5000"))
    with pytest.raises(ConfigError, match="alpha"):
        load_federated(DataConfig(dataset="ecg5000", partition="dirichlet", alpha=-1.0), data_dir)
    with pytest.raises(DataError, match="num-sites"):
        load_federated(DataConfig(dataset="heart-disease", partition="iid", num_sites=100), data_dir)
