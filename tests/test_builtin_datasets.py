"""Built-in datasets: data directory, verified download/cache, the registry, loaders and load_federated."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import PARTITIONS, DataConfig
from common.datasets import download
from common.datasets.builtin import BUILTIN_DATASETS, ecg5000, heart_disease, pneumoniamnist
from common.datasets.builtin.base import BuiltinDataset, DatasetInfo
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.datadir import resolve_data_dir
from common.datasets.download import DatasetFile, DatasetFiles, ensure_files, verify_file
from common.datasets.federated import PARTITIONERS, load_federated
from common.datasets.samples import MITBIH_100
from common.errors import ConfigError, DataError, DatasetUnavailableError
from tests.conftest import REPO

FILES = {spec.folder: spec for spec in (heart_disease.FILES, pneumoniamnist.FILES, ecg5000.FILES, MITBIH_100)}

# ----------------------------------------------------------------- data directory


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDFED_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "medfed" / "datasets"
    monkeypatch.setenv("MEDFED_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "cli") == tmp_path / "cli"
    assert resolve_data_dir("~/x") == tmp_path / "home" / "x"


# ----------------------------------------------------------------- checksums


def test_shared_copies_verify(data_dir):
    for folder, spec in FILES.items():
        assert ensure_files(spec, data_dir, download=False) == data_dir / folder
    assert ensure_files(BUILTIN_DATASETS.get("heart-disease").files, data_dir) == data_dir / "uci-heart-disease"


def _copy_with_flipped_byte(src: Path, dst: Path, offset: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dst.write_bytes(bytes(data))


def test_modified_copy_is_rejected_with_file_name(data_dir, tmp_path, monkeypatch):
    src = data_dir / "pneumoniamnist" / "pneumoniamnist.npz"
    bad = tmp_path / "pneumoniamnist" / "pneumoniamnist.npz"
    _copy_with_flipped_byte(src, bad, offset=len(src.read_bytes()) // 2)
    monkeypatch.setattr(download, "_download", _must_not_download)
    with pytest.raises(DataError) as err:
        pneumoniamnist.load(tmp_path)
    assert str(bad) in str(err.value)
    assert "checksum" in err.value.problem and err.value.fix


def test_modified_heart_file_is_rejected(data_dir, tmp_path):
    folder = tmp_path / "uci-heart-disease"
    folder.mkdir()
    for f in (data_dir / "uci-heart-disease").glob("processed.*.data"):
        shutil.copyfile(f, folder / f.name)
    target = folder / "processed.va.data"
    _copy_with_flipped_byte(data_dir / "uci-heart-disease" / "processed.va.data", target, offset=10)
    with pytest.raises(DataError, match="processed.va.data"):
        ensure_files(heart_disease.FILES, tmp_path, download=False)


def test_official_md5_is_an_accepted_alternative(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"official bytes")
    spec = DatasetFile("x.bin", "https://example.org/x.bin", sha256=("0" * 64,),
                       md5=(hashlib.md5(b"official bytes").hexdigest(),))
    assert verify_file(f, spec) == hashlib.sha256(b"official bytes").hexdigest()
    f.write_bytes(b"other bytes")
    with pytest.raises(DataError):
        verify_file(f, spec)


# ----------------------------------------------------------------- download / offline


def _must_not_download(url: str, dest: Path) -> None:
    raise AssertionError(f"unexpected download of {url}")


def test_offline_names_folder_files_and_official_url(tmp_path, monkeypatch):
    def offline(url: str, dest: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(download, "_download", offline)
    with pytest.raises(DatasetUnavailableError) as err:
        heart_disease.load(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "uci-heart-disease") in msg
    assert "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/processed.cleveland.data" in msg
    assert "processed.va.data" in msg  # every missing file is named
    assert not any((tmp_path / "uci-heart-disease").iterdir())  # nothing half-written

    with pytest.raises(DatasetUnavailableError, match="zenodo.org/records/10519652"):
        pneumoniamnist.load(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="ECG5000.zip"):
        ecg5000.load(tmp_path)


def test_download_switched_off_never_touches_network(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_download", _must_not_download)
    with pytest.raises(DatasetUnavailableError, match="physionet.org/files/mitdb/1.0.0/100.hea"):
        ensure_files(MITBIH_100, tmp_path, download=False)


def test_download_is_verified_and_cached(data_dir, tmp_path, monkeypatch):
    calls: list[str] = []

    def fake(url: str, dest: Path) -> None:  # serve the shared copy as if it were UCI
        calls.append(url)
        shutil.copyfile(data_dir / "uci-heart-disease" / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(download, "_download", fake)
    folder = ensure_files(heart_disease.FILES, tmp_path)
    assert len(calls) == 4 and all(u.startswith("https://archive.ics.uci.edu/") for u in calls)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["processed.cleveland.data", "processed.hungarian.data", "processed.switzerland.data", "processed.va.data"]
    )  # no temporary files left behind
    ensure_files(heart_disease.FILES, tmp_path)
    assert len(calls) == 4  # cached: no second download
    assert heart_disease.load(tmp_path).checksums == heart_disease.load(data_dir).checksums


def test_corrupt_download_is_refused_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_download", lambda url, dest: Path(dest).write_bytes(b"<html>captive portal</html>"))
    with pytest.raises(DataError) as err:
        ensure_files(pneumoniamnist.FILES, tmp_path)
    assert "zenodo.org" in str(err.value) and "pneumoniamnist.npz" in str(err.value)
    assert not (tmp_path / "pneumoniamnist" / "pneumoniamnist.npz").exists()


def test_ecg5000_is_extracted_from_the_ucr_zip(data_dir, tmp_path, monkeypatch):
    def fake_zip(url: str, dest: Path) -> None:
        assert url == "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip"
        with zipfile.ZipFile(dest, "w") as zf:
            zf.write(data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt", "ECG5000/ECG5000_TRAIN.txt")
            zf.writestr("ECG5000/ECG5000_TEST.txt", "1 0.0\n")

    monkeypatch.setattr(download, "_download", fake_zip)
    folder = ensure_files(ecg5000.FILES, tmp_path)
    assert [p.name for p in folder.iterdir()] == ["ECG5000_TRAIN.txt"]


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
    assert ds.site_names() == list(HEART)


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


# ----------------------------------------------------------------- the registry


def test_registry_names_and_info():
    assert BUILTIN_DATASETS.names() == ("heart-disease", "pneumoniamnist", "ecg5000")
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
    assert "heart-disease, toy" in err.value.fix  # every dataset that has natural sites, none other
