"""common/datasets/download.py: verified copies (checksums), offline refusals, and the verified download cache."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
import pytest
from common.datasets import download
from common.datasets.builtin import BUILTIN_DATASETS, ecg5000, heart_disease, pneumoniamnist
from common.datasets.download import DatasetFile, ensure_files, verify_file
from common.datasets.samples import MITBIH_100
from common.errors import DataError, DatasetUnavailableError

FILES = {spec.folder: spec for spec in (heart_disease.FILES, pneumoniamnist.FILES, ecg5000.FILES, MITBIH_100)}

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
