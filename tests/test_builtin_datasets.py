"""Built-in datasets: data directory, verified download/cache, loaders and load_federated."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from common import datadir
from common.config import DataConfig
from common.datadir import DatasetFile, ensure_dataset_files, resolve_data_dir, verify_file
from common.datasets.builtin import (
    ecg5000_splits,
    load_ecg5000,
    load_heart_disease,
    load_pneumoniamnist,
    pneumonia_splits,
)
from common.datasets.federated import BUILTIN_DATASETS, dataset_info, load_federated
from common.errors import ConfigError, DataError, DatasetUnavailableError

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
    for name in ("uci-heart-disease", "pneumoniamnist", "ecg5000-train", "mitbih-100"):
        assert ensure_dataset_files(name, data_dir, download=False) == data_dir / name
    assert ensure_dataset_files("heart-disease", data_dir) == data_dir / "uci-heart-disease"  # alias


def _copy_with_flipped_byte(src: Path, dst: Path, offset: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dst.write_bytes(bytes(data))


def test_modified_copy_is_rejected_with_file_name(data_dir, tmp_path, monkeypatch):
    src = data_dir / "pneumoniamnist" / "pneumoniamnist.npz"
    bad = tmp_path / "pneumoniamnist" / "pneumoniamnist.npz"
    _copy_with_flipped_byte(src, bad, offset=len(src.read_bytes()) // 2)
    monkeypatch.setattr(datadir, "_download", _must_not_download)
    with pytest.raises(DataError) as err:
        load_pneumoniamnist(tmp_path)
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
        ensure_dataset_files("uci-heart-disease", tmp_path, download=False)


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

    monkeypatch.setattr(datadir, "_download", offline)
    with pytest.raises(DatasetUnavailableError) as err:
        load_heart_disease(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "uci-heart-disease") in msg
    assert "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/processed.cleveland.data" in msg
    assert "processed.va.data" in msg  # every missing file is named
    assert not any((tmp_path / "uci-heart-disease").iterdir())  # nothing half-written

    with pytest.raises(DatasetUnavailableError, match="zenodo.org/records/10519652"):
        load_pneumoniamnist(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="ECG5000.zip"):
        load_ecg5000(tmp_path)


def test_download_switched_off_never_touches_network(tmp_path, monkeypatch):
    monkeypatch.setattr(datadir, "_download", _must_not_download)
    with pytest.raises(DatasetUnavailableError, match="physionet.org/files/mitdb/1.0.0/100.hea"):
        ensure_dataset_files("mitbih-100", tmp_path, download=False)


def test_download_is_verified_and_cached(data_dir, tmp_path, monkeypatch):
    calls: list[str] = []

    def fake(url: str, dest: Path) -> None:  # serve the shared copy as if it were UCI
        calls.append(url)
        shutil.copyfile(data_dir / "uci-heart-disease" / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(datadir, "_download", fake)
    folder = ensure_dataset_files("uci-heart-disease", tmp_path)
    assert len(calls) == 4 and all(u.startswith("https://archive.ics.uci.edu/") for u in calls)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["processed.cleveland.data", "processed.hungarian.data", "processed.switzerland.data", "processed.va.data"]
    )  # no temporary files left behind
    ensure_dataset_files("uci-heart-disease", tmp_path)
    assert len(calls) == 4  # cached: no second download
    assert load_heart_disease(tmp_path).checksums == load_heart_disease(data_dir).checksums


def test_corrupt_download_is_refused_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(datadir, "_download", lambda url, dest: Path(dest).write_bytes(b"<html>captive portal</html>"))
    with pytest.raises(DataError) as err:
        ensure_dataset_files("pneumoniamnist", tmp_path)
    assert "zenodo.org" in str(err.value) and "pneumoniamnist.npz" in str(err.value)
    assert not (tmp_path / "pneumoniamnist" / "pneumoniamnist.npz").exists()


def test_ecg5000_is_extracted_from_the_ucr_zip(data_dir, tmp_path, monkeypatch):
    def fake_zip(url: str, dest: Path) -> None:
        assert url == "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip"
        with zipfile.ZipFile(dest, "w") as zf:
            zf.write(data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt", "ECG5000/ECG5000_TRAIN.txt")
            zf.writestr("ECG5000/ECG5000_TEST.txt", "1 0.0\n")

    monkeypatch.setattr(datadir, "_download", fake_zip)
    folder = ensure_dataset_files("ecg5000", tmp_path)
    assert [p.name for p in folder.iterdir()] == ["ECG5000_TRAIN.txt"]


# ----------------------------------------------------------------- loaders

HEART = {  # site -> (train, test, negatives, positives)
    "cleveland": (199, 104, 164, 139),
    "hungary": (172, 89, 163, 98),
    "switzerland": (30, 16, 1, 45),
    "va": (85, 45, 29, 101),
}


def test_heart_disease_flamby_sites_and_split(data_dir):
    ds = load_heart_disease(data_dir)
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
    again = load_heart_disease(data_dir)
    assert torch.equal(again.sites["va"].test.x, ds.sites["va"].test.x)


def test_pneumoniamnist_official_splits(data_dir):
    splits = pneumonia_splits(data_dir)
    counts = {k: s.class_counts(2) for k, s in splits.items()}
    assert counts == {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]}
    x = splits["train"].x
    assert x.shape == (4708, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5

    ds = load_pneumoniamnist(data_dir)
    assert ds.site_names() == ["pooled"] and ds.class_names == ["normal", "pneumonia"]
    assert (ds.modality, ds.input_shape, ds.num_classes) == ("image", (1, 28, 28), 2)
    assert len(ds.sites["pooled"].train) == 4708 and len(ds.sites["pooled"].test) == 624
    assert ds.central_test is not None and len(ds.central_test) == 624
    assert ds.checksums["pneumoniamnist.npz"].startswith("20568c3c")


def test_ecg5000_stratified_seeded_splits(data_dir):
    splits = ecg5000_splits(data_dir, seed=0)
    assert sum(len(s) for s in splits.values()) == 500
    assert [len(splits[k]) for k in ("train", "val", "test")] == [302, 99, 99]
    assert all(c > 0 for c in splits["train"].class_counts(5))
    total = np.sum([s.class_counts(5) for s in splits.values()], axis=0)
    assert total.tolist() == [292, 177, 10, 19, 2]
    assert splits["train"].x.shape == (302, 1, 140)
    # the split is a function of the seed
    assert torch.equal(ecg5000_splits(data_dir, seed=0)["test"].x, splits["test"].x)
    assert not torch.equal(ecg5000_splits(data_dir, seed=1)["test"].x, splits["test"].x)

    ds = load_ecg5000(data_dir)
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
    info = dataset_info(dataset)
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
    assert "dirichlet" in err.value.fix
    with pytest.raises(ConfigError) as err:
        load_federated(DataConfig(dataset="cifar10", partition="iid"), data_dir)
    assert all(name in err.value.fix for name in ("heart-disease", "pneumoniamnist", "ecg5000"))
    with pytest.raises(ConfigError, match="alpha"):
        load_federated(DataConfig(dataset="ecg5000", partition="dirichlet", alpha=-1.0), data_dir)
    with pytest.raises(DataError, match="num-sites"):
        load_federated(DataConfig(dataset="heart-disease", partition="iid", num_sites=100), data_dir)


def test_registry_matches_loaders():
    assert set(BUILTIN_DATASETS) == {"heart-disease", "pneumoniamnist", "ecg5000"}
    assert BUILTIN_DATASETS["heart-disease"].default_partition == "natural"
    assert dataset_info("pneumoniamnist").input_shape == (1, 28, 28)
