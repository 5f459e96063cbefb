"""Hospital loaders: every format on real shared data where there is some, on small generated
good files, and on generated bad files that must give a `DataError` naming the file."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from common.datasets.check import check_dataset, summarise
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.config import DataConfig
from common.datasets.formats import FORMATS
from common.datasets.formats.base import HospitalFormat, ReadOptions
from common.datasets.hospital import infer_format, load_hospital
from common.datasets.loaders.base import RawData
from common.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def only_site(ds: FederatedDataset) -> SiteData:
    assert len(ds.sites) == 1
    return next(iter(ds.sites.values()))


def assert_contract(ds: FederatedDataset, modality: str, input_shape: tuple[int, ...]) -> SiteData:
    site = only_site(ds)
    assert ds.modality == modality
    assert ds.input_shape == input_shape
    for split in (site.train, site.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape[1:]) == input_shape and len(split.x) == len(split.y) > 0
        assert torch.isfinite(split.x).all()
        assert int(split.y.min()) >= 0 and int(split.y.max()) < ds.num_classes
    if modality == "image":
        assert float(site.train.x.min()) >= 0.0 and float(site.train.x.max()) <= 1.0
    assert check_dataset(ds) == []
    return site


def data_error(fn, *names: str) -> DataError:
    """Call ``fn``; it must raise DataError whose message names every string in ``names``."""
    with pytest.raises(DataError) as info:
        fn()
    for name in names:
        assert name in info.value.message, f"{name!r} not in: {info.value.message}"
    return info.value


# ---------------------------------------------------------------------------------- npz
def write_npz(path: Path, *, n_train=40, n_test=12, n_val=8, hw=(28, 28), channels=0, label_shape2=True, **over):
    def imgs(n):
        shape = (n, *hw, channels) if channels else (n, *hw)
        return RNG.integers(0, 256, size=shape, dtype=np.uint8)

    def labels(n):
        y = np.arange(n) % 2
        return y.reshape(-1, 1).astype(np.uint8) if label_shape2 else y.astype(np.int64)

    arrays = {
        "train_images": imgs(n_train),
        "train_labels": labels(n_train),
        "test_images": imgs(n_test),
        "test_labels": labels(n_test),
    }
    if n_val:
        arrays |= {"val_images": imgs(n_val), "val_labels": labels(n_val)}
    arrays |= over
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return path


def test_npz_medmnist_layout_val_merged_into_train(tmp_path):
    path = write_npz(tmp_path / "site_a.npz")
    ds = load_hospital(path, "npz")
    site = assert_contract(ds, "image", (1, 28, 28))
    assert ds.name == "site_a" and list(ds.sites) == ["site_a"]
    assert (len(site.train), len(site.test)) == (48, 12)  # val (8) joins train (40)
    assert ds.num_classes == 2 and ds.summary()["sites"]["site_a"]["class_counts"]["test"] == [6, 6]
    # pixel values are the uint8 values / 255, in order, train first
    with np.load(path) as raw:
        expected = raw["train_images"][0].astype(np.float32) / 255
    assert torch.allclose(site.train.x[0, 0], torch.from_numpy(expected))
    assert "site_a.npz" in ds.checksums


def test_npz_rgb_and_flat_labels(tmp_path):
    path = write_npz(tmp_path / "rgb.npz", channels=3, hw=(32, 32), n_val=0, label_shape2=False)
    ds = load_hospital(path, "npz", site_name="rgb-site")
    assert list(ds.sites) == ["rgb-site"]
    site = assert_contract(ds, "image", (3, 32, 32))  # npz keeps its own size
    with np.load(path) as raw:
        assert torch.allclose(site.test.x[1], torch.from_numpy(raw["test_images"][1].transpose(2, 0, 1) / 255).float())


def test_pneumoniamnist_shared_file_loads_as_one_site(data_dir):
    ds = load_hospital(data_dir / "pneumoniamnist" / "pneumoniamnist.npz", "npz")
    site = assert_contract(ds, "image", (1, 28, 28))
    assert (len(site.train), len(site.test)) == (4708 + 524, 624)
    assert site.test.class_counts(2) == [234, 390]


def test_npz_truncated(tmp_path):
    good = write_npz(tmp_path / "good.npz")
    bad = tmp_path / "cut.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    data_error(lambda: load_hospital(bad, "npz"), "cut.npz")


def test_npz_corrupt_member(tmp_path):
    """A valid zip directory but garbage inside one member still ends as DataError."""
    good = write_npz(tmp_path / "flip.npz")
    data = bytearray(good.read_bytes())
    for i in range(200, 400):
        data[i] ^= 0xFF
    good.write_bytes(bytes(data))
    data_error(lambda: load_hospital(good, "npz"), "flip.npz")


def test_npz_missing_key(tmp_path):
    path = write_npz(tmp_path / "nokey.npz", test_labels=None)
    err = data_error(lambda: load_hospital(path, "npz"), "nokey.npz", "test_labels")
    assert "train_images" in err.fix


def test_npz_nan_values(tmp_path):
    x = RNG.random((20, 28, 28)).astype(np.float32)
    x[3, 4, 5] = np.nan
    path = write_npz(tmp_path / "nan.npz", train_images=x, train_labels=np.arange(20) % 2, n_val=0)
    data_error(lambda: load_hospital(path, "npz"), "nan.npz", "NaN", "train_images/train_labels index 3")


@pytest.mark.parametrize("bad_label, words", [(7, ["out of range", "7"]), (-1, ["negative"])])
def test_npz_labels_out_of_range(tmp_path, bad_label, words):
    y = (np.arange(40) % 2).astype(np.int64)
    y[5] = bad_label
    path = write_npz(tmp_path / "labels.npz", train_labels=y, n_val=0)
    data_error(lambda: load_hospital(path, "npz"), "labels.npz", *words)


def test_npz_num_classes_allows_absent_class_and_bounds_labels(tmp_path):
    y = np.where(np.arange(40) % 2 == 0, 0, 2)
    path = write_npz(tmp_path / "gap.npz", train_labels=y, test_labels=np.where(np.arange(12) % 2, 2, 0), n_val=0)
    data_error(lambda: load_hospital(path, "npz"), "gap.npz", "never occur")
    ds = load_hospital(path, "npz", num_classes=3)
    assert ds.num_classes == 3 and only_site(ds).train.class_counts(3) == [20, 0, 20]
    data_error(lambda: load_hospital(path, "npz", num_classes=2), "gap.npz", "out of range for 2 classes")


def test_npz_count_mismatch_and_bad_dtype(tmp_path):
    path = write_npz(tmp_path / "count.npz", train_labels=np.zeros(39, dtype=np.int64), n_val=0)
    data_error(lambda: load_hospital(path, "npz"), "count.npz", "40 images", "39 labels")
    path = write_npz(tmp_path / "dtype.npz", train_images=RNG.integers(0, 4000, (40, 28, 28)).astype(np.uint16))
    data_error(lambda: load_hospital(path, "npz"), "dtype.npz", "uint16")


def test_npz_single_class_train(tmp_path):
    path = write_npz(tmp_path / "one.npz", train_labels=np.ones(40, dtype=np.int64), n_val=0)
    data_error(lambda: load_hospital(path, "npz"), "one.npz", "only class '1' present")


def test_npz_empty_file(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    data_error(lambda: load_hospital(tmp_path / "empty.npz", "npz"), "empty.npz", "empty")


# --------------------------------------------------------------------------- image folder
def write_image_folder(folder: Path, n=12, *, modes=("L",), suffix=".png", labels=None, split=None, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels if labels is not None else ["normal" if i % 2 else "pneumonia" for i in range(n)]
    rows = []
    for i in range(n):
        mode = modes[i % len(modes)]
        value = 255 if i == 0 else int(RNG.integers(0, 256))
        img = Image.new(mode, size, color=value if mode == "L" else (value, 0, 255 - value))
        name = f"img_{i:03d}{suffix}"
        img.save(folder / name)
        rows.append({"filename": name, "label": labels[i]} | ({"split": split[i]} if split else {}))
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def test_image_folder_grayscale_png_string_labels(tmp_path):
    folder = write_image_folder(tmp_path / "xray")
    ds = load_hospital(folder, "image-folder", image_size=32)
    site = assert_contract(ds, "image", (1, 32, 32))
    assert ds.class_names == ["normal", "pneumonia"]  # sorted class names -> 0, 1
    assert len(site.train) + len(site.test) == 12 and len(site.test) == 2
    white = torch.cat([site.train.x, site.test.x]).amax(dim=(1, 2, 3))
    assert torch.isclose(white.max(), torch.tensor(1.0))


def test_image_folder_rgb_jpeg_int_labels_explicit_split(tmp_path):
    split = ["train"] * 8 + ["test"] * 4
    folder = write_image_folder(
        tmp_path / "derm", modes=("RGB",), suffix=".jpg", labels=[i % 3 for i in range(12)], split=split
    )
    ds = load_hospital(folder, "image-folder", image_size=28)
    site = assert_contract(ds, "image", (3, 28, 28))
    assert ds.class_names == ["0", "1", "2"] and (len(site.train), len(site.test)) == (8, 4)
    gray = load_hospital(folder, "image-folder", channels=1)
    assert gray.input_shape == (1, 28, 28)


def test_image_folder_mixed_gray_and_rgb_becomes_rgb(tmp_path):
    folder = write_image_folder(tmp_path / "mixed", modes=("L", "RGB"))
    assert load_hospital(folder, "image-folder").input_shape == (3, 28, 28)


def test_image_folder_corrupt_and_truncated_png(tmp_path):
    folder = write_image_folder(tmp_path / "bad")
    (folder / "img_003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + RNG.bytes(100))
    data_error(lambda: load_hospital(folder, "image-folder"), "img_003.png", "line 5")
    good = write_image_folder(tmp_path / "cut", size=(64, 64))
    blob = (good / "img_002.png").read_bytes()
    (good / "img_002.png").write_bytes(blob[: len(blob) // 2])
    data_error(lambda: load_hospital(good, "image-folder"), "img_002.png")


def test_image_folder_missing_file_and_columns(tmp_path):
    folder = write_image_folder(tmp_path / "missing")
    (folder / "img_007.png").unlink()
    data_error(lambda: load_hospital(folder, "image-folder"), "img_007.png", "line 9", "labels.csv")
    pd.DataFrame({"file": ["img_000.png"], "class": [1]}).to_csv(folder / "labels.csv", index=False)
    data_error(lambda: load_hospital(folder, "image-folder"), "labels.csv", "filename", "label")
    (folder / "labels.csv").write_text("")
    data_error(lambda: load_hospital(folder, "image-folder"), "labels.csv", "empty")
    (folder / "labels.csv").unlink()
    data_error(lambda: load_hospital(folder, "image-folder"), "labels.csv", "does not exist")


def test_image_folder_bad_split_value_and_image_size(tmp_path):
    folder = write_image_folder(tmp_path / "split", split=["train"] * 11 + ["validation"])
    data_error(lambda: load_hospital(folder, "image-folder"), "labels.csv", "line 13", "validation")
    with pytest.raises(ConfigError):
        load_hospital(folder, "image-folder", image_size=512)


def test_image_folder_single_class_train(tmp_path):
    split = ["train"] * 10 + ["test"] * 2
    folder = write_image_folder(tmp_path / "one", labels=["a"] * 10 + ["b"] * 2, split=split)
    data_error(lambda: load_hospital(folder, "image-folder"), "labels.csv", "only class 'a' present")


# ---------------------------------------------------------------------------------- DICOM
def write_dicom(path: Path, pixels: np.ndarray, *, slope=1.0, intercept=0.0, photometric="MONOCHROME2"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_dicom_folder(folder: Path, n=10, *, split=None):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        # a smooth gradient with a random offset/contrast: resizing keeps its extremes
        ramp = np.add.outer(np.arange(40), np.arange(48)).astype(np.float64)
        pixels = (int(RNG.integers(0, 1000)) + ramp * int(RNG.integers(5, 40))).astype(np.uint16)
        write_dicom(folder / f"scan{i}.dcm", pixels, slope=2.0, intercept=-1024.0)
        rows.append({"filename": f"scan{i}.dcm", "label": i % 2} | ({"split": split[i]} if split else {}))
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def test_dicom_folder_rescaled_resized_in_unit_range(tmp_path):
    folder = write_dicom_folder(tmp_path / "ct")
    ds = load_hospital(folder, "dicom", image_size=32)
    site = assert_contract(ds, "image", (1, 32, 32))
    assert len(site.train) + len(site.test) == 10
    x = torch.cat([site.train.x, site.test.x])
    assert x.amax(dim=(1, 2, 3)).min() > 0.95 and x.amin(dim=(1, 2, 3)).max() < 0.05  # own range each


def test_dicom_rescale_and_monochrome1(tmp_path):
    """Values pass through RescaleSlope/Intercept, then min-max; MONOCHROME1 is inverted."""
    folder = tmp_path / "mono"
    folder.mkdir()
    ramp = np.tile(np.arange(28, dtype=np.uint16) * 10, (28, 1))
    write_dicom(folder / "a.dcm", ramp, slope=3.0, intercept=-500.0)
    write_dicom(folder / "b.dcm", ramp, photometric="MONOCHROME1")
    write_dicom(folder / "c.dcm", ramp)
    write_dicom(folder / "d.dcm", ramp[::-1].copy())
    pd.DataFrame(
        {
            "filename": ["a.dcm", "b.dcm", "c.dcm", "d.dcm"],
            "label": [0, 1, 0, 1],
            "split": ["train", "train", "test", "test"],
        }
    ).to_csv(folder / "labels.csv", index=False)
    site = only_site(load_hospital(folder, "dicom", image_size=28))
    expected = torch.from_numpy(np.tile(np.arange(28) / 27, (28, 1))).float()
    assert torch.allclose(site.train.x[0, 0], expected, atol=1e-6)
    assert torch.allclose(site.train.x[1, 0], 1 - expected, atol=1e-6)


def test_dicom_corrupt_and_truncated(tmp_path):
    folder = write_dicom_folder(tmp_path / "bad")
    (folder / "scan4.dcm").write_bytes(RNG.bytes(500))
    data_error(lambda: load_hospital(folder, "dicom"), "scan4.dcm", "line 6")
    folder = write_dicom_folder(tmp_path / "cut")
    blob = (folder / "scan2.dcm").read_bytes()
    (folder / "scan2.dcm").write_bytes(blob[: len(blob) - 1000])
    data_error(lambda: load_hospital(folder, "dicom"), "scan2.dcm")
    (folder / "scan2.dcm").unlink()
    data_error(lambda: load_hospital(folder, "dicom"), "scan2.dcm", "does not exist")


# ----------------------------------------------------------------------------------- WFDB
def test_wfdb_mitbih_100_beats_by_aami_class(data_dir):
    import wfdb

    record = data_dir / "mitbih-100"
    ds = load_hospital(record, "wfdb")
    site = assert_contract(ds, "signal", (1, 252))  # 90 + 162 samples at 360 Hz
    assert ds.class_names == ["N", "S", "V", "F", "Q"]
    counts = np.add(site.train.class_counts(5), site.test.class_counts(5)).tolist()
    # 2273 annotated beats (N 2239, A 33, V 1); the first (sample 77 < 90) and last normal beat
    # (649991 + 162 > 650000) have no full window and are dropped.
    assert counts == [2237, 33, 1, 0, 0]
    assert 2273 - sum(counts) == 2
    # every window is the raw lead-0 signal around an R peak (check one against wfdb directly)
    ann = wfdb.rdann(str(record / "100"), "atr")
    signal = wfdb.rdrecord(str(record / "100")).p_signal[:, 0]
    peaks = [s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym == "N"][1:]
    windows = {tuple(np.round(signal[p - 90 : p + 162], 4)) for p in peaks[:50]}
    found = sum(tuple(np.round(w[0].numpy().astype(np.float64), 4)) in windows for w in site.train.x[:400])
    assert found > 0


def test_wfdb_record_path_leads_and_window(data_dir):
    ds = load_hospital(data_dir / "mitbih-100" / "100.hea", "wfdb", leads=["MLII", "V5"], window=(0.1, 0.1))
    assert ds.name == "100" and ds.input_shape == (2, 72)
    ds1 = load_hospital(data_dir / "mitbih-100" / "100", "wfdb", leads=[1])
    assert ds1.input_shape == (1, 252)
    data_error(lambda: load_hospital(data_dir / "mitbih-100", "wfdb", leads=["V1"]), "100", "V1")


def test_wfdb_missing_annotation_and_corrupt_header(tmp_path, data_dir):
    folder = tmp_path / "rec"
    shutil.copytree(data_dir / "mitbih-100", folder)
    (folder / "100.atr").unlink()
    data_error(lambda: load_hospital(folder, "wfdb"), "100.atr")
    shutil.copy(data_dir / "mitbih-100" / "100.atr", folder / "100.atr")
    (folder / "100.hea").write_text("garbage header\n")
    data_error(lambda: load_hospital(folder, "wfdb"), "100.hea")
    shutil.copy(data_dir / "mitbih-100" / "100.hea", folder / "100.hea")
    (folder / "100.atr").write_bytes(RNG.bytes(64))
    data_error(lambda: load_hospital(folder, "wfdb"), "100.atr")


def test_wfdb_empty_folder(tmp_path):
    data_error(lambda: load_hospital(tmp_path, "wfdb"), str(tmp_path), ".hea")


# ------------------------------------------------------------------------------------ UCR
def test_ucr_ecg5000_whitespace(data_dir):
    path = data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt"
    ds = load_hospital(path, "ucr", seed=0)
    site = assert_contract(ds, "signal", (1, 140))
    assert ds.class_names == ["1", "2", "3", "4", "5"]
    total = np.add(site.train.class_counts(5), site.test.class_counts(5)).tolist()
    assert total == [292, 177, 10, 19, 2]
    assert site.test.class_counts(5) == [58, 35, 2, 4, 0]  # round(n_c * 0.2), >= 1 kept in train
    raw = np.loadtxt(path, dtype=np.float32)
    assert any(torch.allclose(site.train.x[0, 0], torch.from_numpy(r[1:])) for r in raw)
    other = only_site(load_hospital(path, "ucr", seed=1))
    assert not torch.equal(other.test.x, site.test.x)  # the seed moves the split
    assert torch.equal(only_site(load_hospital(path, "ucr", seed=0)).test.x, site.test.x)


@pytest.mark.parametrize("sep, name", [(",", "series.csv.txt"), ("\t", "series.tsv")])
def test_ucr_comma_and_tab(tmp_path, sep, name):
    lines = [
        sep.join([("abnormal" if i % 3 else "normal")] + [f"{v:.4f}" for v in RNG.normal(size=16)]) for i in range(30)
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    ds = load_hospital(path, "ucr")
    site = assert_contract(ds, "signal", (1, 16))
    assert ds.class_names == ["abnormal", "normal"] and len(site.train) + len(site.test) == 30


def test_ucr_labels_sort_numerically(tmp_path):
    path = tmp_path / "num.txt"
    path.write_text("\n".join(f"{10 if i % 2 else 2} 0.{i} 1.{i} 2.{i}" for i in range(20)))
    assert load_hospital(path, "ucr").class_names == ["2", "10"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("1,0.1,0.2\n2,0.3,nan\n1,0.5,0.6\n2,0.1,0.1\n", ["line 2", "column 3"]),
        ("1 0.1 0.2\n2 0.3\n1 0.5 0.6\n2 0.1 0.1\n", ["line 2", "missing"]),
        ("label a b\n1 0.1 0.2\n2 0.3 0.4\n", ["line 1", "'a'"]),
        ("1\n2\n", ["one column"]),
        ("", ["empty"]),
        ("\n\n", ["blank"]),
        ("1 0.1 inf\n2 0.1 0.2\n", ["line 1", "column 3"]),
    ],
)
def test_ucr_bad_files(tmp_path, text, words):
    path = tmp_path / "bad_series.txt"
    path.write_text(text)
    data_error(lambda: load_hospital(path, "ucr"), "bad_series.txt", *words)


def test_ucr_single_class(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("\n".join(f"3 0.{i} 0.5 0.7" for i in range(10)))
    data_error(lambda: load_hospital(path, "ucr"), "one.txt", "only class '3' present")


# ---------------------------------------------------------------------------------- table
def make_table(n=40, *, label="label"):
    return pd.DataFrame(
        {
            "age": RNG.integers(20, 90, n),
            "chol": RNG.normal(200, 30, n).round(1),
            "smoker": RNG.integers(0, 2, n).astype(bool),
            label: ["yes" if i % 3 else "no" for i in range(n)],
        }
    )


def test_table_csv_and_parquet(tmp_path):
    df = make_table()
    df.to_csv(tmp_path / "heart.csv", index=False)
    df.to_parquet(tmp_path / "heart.parquet")
    for name in ("heart.csv", "heart.parquet"):
        ds = load_hospital(tmp_path / name, "table")
        site = assert_contract(ds, "tabular", (3,))
        assert ds.name == "heart" and ds.class_names == ["no", "yes"]
        assert len(site.train) + len(site.test) == 40 and len(site.test) == 8
        rows = df[["age", "chol", "smoker"]].to_numpy(dtype=np.float32)
        x0 = site.train.x[0].numpy()
        assert any(np.allclose(x0, r) for r in rows)


def test_table_label_column_and_split_column(tmp_path):
    df = make_table(label="outcome").assign(split=["test" if i < 10 else "train" for i in range(40)])
    df["outcome"] = [i % 2 for i in range(40)]
    df.to_csv(tmp_path / "t.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "t.csv", "table"), "t.csv", "'label'", "outcome")
    ds = load_hospital(tmp_path / "t.csv", "table", label_column="outcome")
    site = assert_contract(ds, "tabular", (3,))  # split is not a feature
    assert (len(site.train), len(site.test)) == (30, 10) and ds.class_names == ["0", "1"]


def test_table_non_numeric_columns_listed_with_fix(tmp_path):
    df = make_table().assign(sex=["m", "f"] * 20, ward=["A"] * 40)
    df.to_csv(tmp_path / "mixed.csv", index=False)
    err = data_error(lambda: load_hospital(tmp_path / "mixed.csv", "table"), "mixed.csv", "sex", "ward")
    assert "encode" in err.fix and "drop" in err.fix


def test_table_nan_names_line_and_column(tmp_path):
    df = make_table()
    df["chol"] = df["chol"].astype(float)
    df.loc[6, "chol"] = np.nan
    df.to_csv(tmp_path / "gaps.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "gaps.csv", "table"), "gaps.csv", "'chol'", "line 8")
    df.to_parquet(tmp_path / "gaps.parquet")
    data_error(lambda: load_hospital(tmp_path / "gaps.parquet", "table"), "gaps.parquet", "'chol'", "row 7")


def test_table_bad_labels_empty_and_single_class(tmp_path):
    df = make_table()
    df["label"] = [i % 2 for i in range(40)]
    df.loc[3, "label"] = -2
    df.to_csv(tmp_path / "neg.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "neg.csv", "table"), "neg.csv", "negative", "line 5")
    df["label"] = 1
    df.to_csv(tmp_path / "one.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "one.csv", "table"), "one.csv", "only class")
    (tmp_path / "empty.csv").write_text("")
    data_error(lambda: load_hospital(tmp_path / "empty.csv", "table"), "empty.csv", "empty")
    (tmp_path / "header.csv").write_text("age,label\n")
    data_error(lambda: load_hospital(tmp_path / "header.csv", "table"), "header.csv", "no rows")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1" + RNG.bytes(50))
    data_error(lambda: load_hospital(tmp_path / "junk.parquet", "table"), "junk.parquet")


def test_table_too_small_for_test_split(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": [0, 1, 0]}).to_csv(tmp_path / "tiny.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "tiny.csv", "table", test_fraction=0.1), "tiny.csv", "too few")


# ------------------------------------------------------------------ formats and inference
def test_infer_format(tmp_path, data_dir):
    assert infer_format(data_dir / "pneumoniamnist" / "pneumoniamnist.npz") == "npz"
    assert infer_format(data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt") == "ucr"
    assert infer_format(data_dir / "mitbih-100") == "wfdb"
    assert infer_format(data_dir / "mitbih-100" / "100") == "wfdb"
    assert infer_format(tmp_path / "x.parquet") == "table"
    assert infer_format(write_image_folder(tmp_path / "imgs", n=2)) == "image-folder"
    (tmp_path / "imgs" / "extra.dcm").write_bytes(b"")
    with pytest.raises(ConfigError, match="--format"):
        infer_format(tmp_path / "imgs")  # .dcm and images: ambiguous
    (tmp_path / "export.bin").write_bytes(b"1,2\n")
    with pytest.raises(ConfigError, match="--format"):
        infer_format(tmp_path / "export.bin")  # unknown suffix
    data_error(lambda: infer_format(tmp_path / "gone.bin"), "gone.bin", "does not exist")
    assert FORMATS.names() == ("npz", "image-folder", "dicom", "wfdb", "ucr", "table", "text-table")


SUFFIXES = {
    ".npz": "npz", ".csv": "table", ".parquet": "table", ".pq": "table", ".txt": "ucr", ".tsv": "ucr",
    ".hea": "wfdb", ".atr": "wfdb", ".dat": "wfdb", ".CSV": "table",
}  # fmt: skip


@pytest.mark.parametrize(("suffix", "fmt"), SUFFIXES.items())
def test_infer_format_for_each_suffix(tmp_path, suffix, fmt):
    assert infer_format(tmp_path / f"export{suffix}") == fmt  # named, not yet there
    (tmp_path / f"export{suffix}").write_bytes(b"")
    assert infer_format(tmp_path / f"export{suffix}") == fmt


def test_every_registered_suffix_is_inferred(tmp_path):
    for name, fmt in FORMATS.items():
        for suffix in fmt.suffixes:
            assert infer_format(tmp_path / f"x{suffix}") == name


@pytest.mark.parametrize(("files", "fmt"), [(["a.dcm", "labels.csv"], "dicom"), (["a.hea", "a.dat"], "wfdb")])
def test_infer_format_of_a_folder(tmp_path, files, fmt):
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert infer_format(tmp_path) == fmt


def test_empty_folder_names_every_folder_signature(tmp_path):
    with pytest.raises(ConfigError) as err:
        infer_format(tmp_path)
    assert ".dcm files" in err.value.problem and ".hea files" in err.value.problem
    assert ".png/.jpg/.jpeg files with a labels.csv" in err.value.problem


def test_unknown_format_errors_name_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_hospital(tmp_path / "x.h5", "hdf5")
    assert "hdf5" in err.value.problem and all(name in err.value.fix for name in FORMATS.names())
    (problem,) = DataConfig(data_path="x.h5", data_format="hdf5").problems()
    assert problem.startswith("data-format='hdf5' is unknown") and "image-folder" in problem
    assert DataConfig(data_path="", data_format="").problems() == []  # a built-in dataset needs no format


def _read_toy(path: Path, options: ReadOptions) -> RawData:
    """One example per line: 'label value value ...'."""
    rows = np.loadtxt(path, ndmin=2)
    return RawData(x=rows[:, 1:].astype(np.float32), labels=rows[:, 0].astype(np.int64), modality="tabular",
                   source=path)


@pytest.fixture
def register_format(monkeypatch):
    """Register into a copy of the registry, so each test leaves FORMATS as it found it."""
    monkeypatch.setattr(FORMATS, "_entries", dict(FORMATS._entries))
    return lambda fmt: FORMATS.register(fmt.name, fmt)


def test_format_registered_in_a_test_loads_through_load_hospital(tmp_path, register_format):
    register_format(HospitalFormat(name="toy", description="a test format", read=_read_toy, suffixes=(".toy",)))
    path = tmp_path / "ward.toy"
    path.write_text("".join(f"{i % 2} {i} {i * 0.5}\n" for i in range(20)))
    assert infer_format(path) == "toy"
    ds = load_hospital(path, None)
    site = assert_contract(ds, "tabular", (2,))
    assert (len(site.train), len(site.test)) == (16, 4)
    assert DataConfig(data_path=str(path), data_format="toy").problems() == []


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(ConfigError, match="hdf5"):
        load_hospital(tmp_path, "hdf5")
    data_error(lambda: load_hospital(tmp_path / "nowhere.csv", "table"), "nowhere.csv", "does not exist")


# ---------------------------------------------------------------------------- check.py
def test_check_dataset_reports_every_problem():
    x = torch.zeros(6, 3)
    x[1, 2] = float("nan")
    bad = FederatedDataset(
        name="bad",
        modality="tabular",
        input_shape=(3,),
        num_classes=2,
        class_names=["a", "b"],
        sites={
            "s1": SiteData(
                "s1",
                Split(x, torch.tensor([0, 1, 0, 1, 0, 5])),
                Split(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)),
            ),
            "s2": SiteData(
                "s2",
                Split(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)),
                Split(torch.zeros(2, 3), torch.tensor([0, -1])),
            ),
        },
    )
    problems = check_dataset(bad)
    joined = "\n".join(problems)
    for words in (
        "site s1 train: 1 example(s) hold NaN",
        "site s1 train: labels span 0..5",
        "site s1 test: split is empty",
        "site s2 train: input shape (2,)",
        "site s2 test: labels span -1..0",
    ):
        assert words in joined, words
    summary = summarise(bad)  # negative labels must not crash the counting
    assert summary["valid"] is False and summary["problems"] == problems
    assert summary["sites"]["s2"]["warnings"] == [next(w for w in summary["warnings"] if "s2" in w)]


# ---------------------------------------------------------------------- fuzz: never crash
_FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CSV_ALPHABET = st.sampled_from(
    list("0123456789.,-+e \t\n") + ["nan", "inf", "label", "a", '"', "1,2,3\n", "\r\n", "\x00", "é"]
)


def _load_or_data_error(data: bytes, name: str, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            ds = load_hospital(path, fmt)
        except DataError:
            return
        assert check_dataset(ds) == []


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_table_and_ucr(data):
    _load_or_data_error(data, "fuzz.csv", "table")
    _load_or_data_error(data, "fuzz.parquet", "table")
    _load_or_data_error(data, "fuzz.txt", "ucr")


@_FUZZ
@given(st.lists(_CSV_ALPHABET, max_size=120).map("".join))
def test_fuzz_random_csv_text_table_and_ucr(text):
    data = text.encode("utf-8")
    _load_or_data_error(("a,b,label\n" + text).encode(), "fuzz.csv", "table")
    _load_or_data_error(data, "fuzz.txt", "ucr")
    _load_or_data_error(data, "fuzz.tsv", "ucr")


@_FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2]),
            st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_fuzz_structured_ucr_rows(rows):
    """Well-formed lines with arbitrary numbers (incl. NaN/inf) and class mixes."""
    text = "\n".join(" ".join([str(c)] + [repr(v) for v in vals]) for c, vals in rows)
    _load_or_data_error(text.encode(), "rows.txt", "ucr")
    counts = Counter(c for c, _ in rows)
    finite = all(np.isfinite(vals).all() for _, vals in rows)
    if finite and len(counts) >= 2 and len(rows) >= 5 and sum(round(n * 0.2) > 0 and n > 1 for n in counts.values()):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "rows.txt").write_text(text)
            ds = load_hospital(Path(tmp) / "rows.txt", "ucr")
            assert len(only_site(ds).train) + len(only_site(ds).test) == len(rows)
