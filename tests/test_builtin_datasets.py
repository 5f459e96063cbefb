"""common/datasets/builtin/: each built-in dataset's loader, the registry, and a dataset registered by a test."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
import numpy as np
import pytest
import torch
from common.config import PARTITIONS, DataConfig
from common.datasets.builtin import BUILTIN_DATASETS, ecg5000, heart_disease, pneumoniamnist
from common.datasets.builtin.base import BuiltinDataset, DatasetInfo
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.download import DatasetFiles
from common.datasets.federated import PARTITIONERS, load_federated
from common.errors import ConfigError
from tests.conftest import REPO

# ----------------------------------------------------------------- loaders

HEART = {  # site -> (train, test, negatives, positives)
    "cleveland": (199, 104, 164, 139),
    "hungary": (172, 89, 163, 98),
    "switzerland": (30, 16, 1, 45),
    "va": (85, 45, 29, 101),
}


def test_heart_disease_flamby_sites_and_split(data_dir):
    ds = heart_disease.load(data_dir)
    assert ds.site_names() == list(HEART)
    assert (ds.modality, ds.input_shape, ds.num_classes) == ("tabular", (10,), 2)
    assert ds.class_names == ["no disease", "disease"]
    for name, (n_train, n_test, neg, pos) in HEART.items():
        site = ds.sites[name]
        assert (len(site.train), len(site.test)) == (n_train, n_test)
        total = np.add(site.train.class_counts(2), site.test.class_counts(2))
        assert total.tolist() == [neg, pos]
        assert site.train.x.dtype == torch.float32 and site.train.y.dtype == torch.int64
        assert site.train.x.shape == (n_train, 10)
    assert sum(len(s.train) + len(s.test) for s in ds.sites.values()) == 740
    assert float(ds.sites["cleveland"].train.x[:, 0].mean()) > 40  # raw ages: not normalised here
    assert len(ds.checksums) == 4
    assert ds.central_test is None  # natural sites keep their own test rows
    again = heart_disease.load(data_dir)
    assert torch.equal(again.sites["va"].test.x, ds.sites["va"].test.x)


def test_pneumoniamnist_official_splits(data_dir):
    splits = pneumoniamnist.splits(data_dir)
    counts = {k: s.class_counts(2) for k, s in splits.items()}
    assert counts == {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]}
    x = splits["train"].x
    assert x.shape == (4708, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5

    ds = pneumoniamnist.load(data_dir)
    assert ds.site_names() == ["pooled"] and ds.class_names == ["normal", "pneumonia"]
    assert (ds.modality, ds.input_shape, ds.num_classes) == ("image", (1, 28, 28), 2)
    assert len(ds.sites["pooled"].train) == 4708 and len(ds.sites["pooled"].test) == 624
    assert ds.central_test is not None and len(ds.central_test) == 624
    assert ds.checksums["pneumoniamnist.npz"].startswith("20568c3c")


def test_ecg5000_stratified_seeded_splits(data_dir):
    splits = ecg5000.splits(data_dir, seed=0)
    assert sum(len(s) for s in splits.values()) == 500
    assert [len(splits[k]) for k in ("train", "val", "test")] == [302, 99, 99]
    assert all(c > 0 for c in splits["train"].class_counts(5))
    total = np.sum([s.class_counts(5) for s in splits.values()], axis=0)
    assert total.tolist() == [292, 177, 10, 19, 2]
    assert splits["train"].x.shape == (302, 1, 140)
    # the split is a function of the seed
    assert torch.equal(ecg5000.splits(data_dir, seed=0)["test"].x, splits["test"].x)
    assert not torch.equal(ecg5000.splits(data_dir, seed=1)["test"].x, splits["test"].x)

    ds = ecg5000.load(data_dir)
    assert (ds.modality, ds.input_shape, ds.num_classes) == ("signal", (1, 140), 5)
    assert ds.class_names == ["normal", "R-on-T PVC", "PVC", "SP or EB", "unclassified"]
    assert ds.central_test is not None and len(ds.central_test) == 99


# ----------------------------------------------------------------- the registry

def test_registry_names_and_info():
    assert BUILTIN_DATASETS.names() == ("heart-disease", "pneumoniamnist", "ecg5000", "medical-abstracts")
    assert BUILTIN_DATASETS.get("heart-disease").info.default_partition == "natural"
    assert BUILTIN_DATASETS.get("heart-disease").info.natural_sites == ("cleveland", "hungary", "switzerland", "va")
    assert BUILTIN_DATASETS.get("pneumoniamnist").info.input_shape == (1, 28, 28)
    assert PARTITIONS == ("natural", *PARTITIONERS.names())  # config's tuple and the partitioners agree


def test_unknown_dataset_errors_name_the_known_ones():
    with pytest.raises(ConfigError) as err:
        BUILTIN_DATASETS.get("cifar10")
    assert "cifar10" in err.value.problem
    assert all(name in err.value.fix for name in BUILTIN_DATASETS.names())
    (problem,) = DataConfig(dataset="cifar10").problems()
    assert problem.startswith("dataset='cifar10' is unknown") and "pneumoniamnist" in problem
    assert DataConfig(dataset="", data_path="ward7.csv", data_format="table").problems() == []


@pytest.mark.parametrize("name", BUILTIN_DATASETS.names())
def test_every_dataset_loads_as_it_declares(data_dir, name):
    """INFO is what models are built from before any file is read: it must match the data."""
    dataset = BUILTIN_DATASETS.get(name)
    ds = dataset.load(data_dir, 0)
    info = dataset.info
    assert (ds.name, ds.modality, ds.input_shape, ds.num_classes) == (
        name, info.modality, info.input_shape, info.num_classes
    )
    assert tuple(ds.class_names) == info.class_names
    assert ds.site_names() == list(info.natural_sites or ("pooled",))
    assert sorted(ds.checksums) == sorted(f.name for f in dataset.files.files)
    assert info.default_partition in PARTITIONS


def test_the_registries_import_no_heavy_libraries():
    """Every process validates its configuration (the ClientApp, `medfed server submit`), so
    reading the dataset and format registries must not load torch, pandas or numpy."""
    code = (
        "import sys; from common.config import DataConfig; "
        "assert DataConfig(dataset='ecg5000', data_path='x.csv', data_format='table').problems() == []; "
        "print(sorted(m for m in ('torch', 'pandas', 'numpy', 'sklearn', 'PIL') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"heavy modules loaded by config validation: {res.stdout}"


# ----------------------------------------------------------------- a dataset registered by a test

_TOY_SITES = ("north", "south")


def _toy_load(data_dir: str | Path | None, seed: int) -> FederatedDataset:
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        return Split.of(rng.normal(size=(n, 2)).astype(np.float32), np.arange(n) % 2)

    sites = {name: SiteData(name, split(40), split(10)) for name in _TOY_SITES}
    return FederatedDataset("toy", "tabular", (2,), 2, ["a", "b"], sites, checksums={"toy.csv": "0" * 64})


TOY = BuiltinDataset(
    name="toy",
    files=DatasetFiles(folder="toy", source="generated by the test", files=()),
    info=DatasetInfo("tabular", "natural", (2,), 2, ("a", "b"), natural_sites=_TOY_SITES),
    load=_toy_load,
)


@pytest.fixture
def register_dataset(monkeypatch):
    """Register into a copy of the registry, so each test leaves BUILTIN_DATASETS as it found it."""
    monkeypatch.setattr(BUILTIN_DATASETS, "_entries", dict(BUILTIN_DATASETS._entries))
    return lambda dataset: BUILTIN_DATASETS.register(dataset.name, dataset)


def test_natural_partition_loads_the_requested_datasets_own_sites(register_dataset):
    """Regression: partition=natural used to load Fed-Heart-Disease whatever the dataset."""
    register_dataset(TOY)
    ds = load_federated(DataConfig(dataset="toy", partition="natural", num_sites=2))
    assert ds.name == "toy" and ds.site_names() == ["north", "south"]


def test_registered_dataset_works_everywhere_without_other_changes(register_dataset):
    register_dataset(TOY)
    register_dataset(dataclasses.replace(TOY, name="pooled-toy", info=dataclasses.replace(TOY.info, natural_sites=())))
    assert DataConfig(dataset="toy").problems() == []
    ds = load_federated(DataConfig(dataset="toy", partition="iid", num_sites=2, seed=3))
    assert ds.site_names() == ["site-0", "site-1"] and len(ds.central_test) == 20
    with pytest.raises(ConfigError) as err:
        load_federated(DataConfig(dataset="pooled-toy", partition="natural"))
    assert "pooled-toy has none" in err.value.problem
    assert "heart-disease, medical-abstracts, toy" in err.value.fix  # every dataset that has natural sites, none other
