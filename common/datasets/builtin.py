"""The built-in datasets, each loaded into the common `FederatedDataset` contract.

Files come verified from the data directory (`common.datadir`). Nothing is normalised here:
statistics must come from each site's own training split (`normalise_with_site_stats`), and
which rows form a site's training split is only known after partitioning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from common.datadir import builtin_dataset, ensure_dataset_files, verify_file
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.partition import stratified_split
from common.errors import DataError

# ------------------------------------------------------------------ Fed-Heart-Disease

# site name -> UCI file; the four hospitals are the natural sites (FLamby's centre order).
HEART_SITES = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va": "processed.va.data",
}
# The 14 UCI fields minus slope, ca, thal (10, 11, 12: mostly missing outside Cleveland) and num.
HEART_FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak"]
HEART_CLASSES = ["no disease", "disease"]
# FLamby's fixed split: 66 % train per centre, random_state 43, stratified on the binary label
# when both classes have more than two members (Switzerland has one negative: unstratified).
_HEART_TRAIN_FRACTION = 0.66
_HEART_RANDOM_STATE = 43


def load_heart_disease(data_dir: str | Path | None = None) -> FederatedDataset:
    """Fed-Heart-Disease with its 4 hospitals as sites, FLamby preprocessing and split.

    Rows with a missing value (after dropping slope/ca/thal) are dropped, leaving
    303/261/46/130 rows; label = num > 0; train/test 199/104, 172/89, 30/16, 85/45. Unlike
    FLamby, cp and restecg stay as single numeric columns (10 features, not 13 dummies).
    """
    folder = ensure_dataset_files("uci-heart-disease", data_dir)
    sites: dict[str, SiteData] = {}
    for site, file_name in HEART_SITES.items():
        x, y = _read_heart_file(folder / file_name)
        stratify = y if all(np.sum(y == c) > 2 for c in (0, 1)) else None
        train_idx, test_idx = train_test_split(
            np.arange(len(y)),
            train_size=_HEART_TRAIN_FRACTION,
            test_size=1.0 - _HEART_TRAIN_FRACTION,
            random_state=_HEART_RANDOM_STATE,
            shuffle=True,
            stratify=stratify,
        )
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        sites[site] = SiteData(site, _split(x[train_idx], y[train_idx]), _split(x[test_idx], y[test_idx]))
    return FederatedDataset(
        name="heart-disease",
        modality="tabular",
        input_shape=(len(HEART_FEATURES),),
        num_classes=2,
        class_names=list(HEART_CLASSES),
        sites=sites,
        checksums=_checksums("uci-heart-disease", folder),
    )


def _read_heart_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        df = pd.read_csv(path, header=None, na_values="?")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable UCI heart-disease file ({exc}).",
                        "replace it with the official file (see DATASETS.md).") from exc
    if df.shape[1] != 14:
        raise DataError(f"{path} has {df.shape[1]} columns; the UCI processed files have 14.",
                        "replace it with the official file (see DATASETS.md).")
    df = df.drop(columns=[10, 11, 12]).dropna(axis=0).astype(float)
    x = df.iloc[:, :-1].to_numpy(dtype=np.float32)
    y = (df.iloc[:, -1].to_numpy() > 0).astype(np.int64)
    return x, y


# ------------------------------------------------------------------ PneumoniaMNIST

PNEUMONIA_CLASSES = ["normal", "pneumonia"]


def pneumonia_splits(data_dir: str | Path | None = None) -> dict[str, Split]:
    """The official MedMNIST splits ``train`` (4708), ``val`` (524), ``test`` (624).

    Images are float32 in [0, 1], shape (n, 1, 28, 28). The shared copy lists all normal
    training images first: never rely on the order (partitioners and loaders shuffle).
    """
    return _read_pneumonia(ensure_dataset_files("pneumoniamnist", data_dir))


def _read_pneumonia(folder: Path) -> dict[str, Split]:
    path = folder / "pneumoniamnist.npz"
    out: dict[str, Split] = {}
    with np.load(path) as npz:
        for split in ("train", "val", "test"):
            try:
                images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            except KeyError as exc:
                raise DataError(f"{path} has no {exc} array; it is not a MedMNIST file.",
                                "replace it with the official pneumoniamnist.npz.") from exc
            x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
            out[split] = _split(x, labels.reshape(-1).astype(np.int64))
    return out


def load_pneumoniamnist(data_dir: str | Path | None = None) -> FederatedDataset:
    """PneumoniaMNIST as one 'pooled' site (official train / test); central_test = official test.

    The official val split is available from `pneumonia_splits`. Partition with
    `common.datasets.federated.load_federated` to get virtual hospitals.
    """
    folder = ensure_dataset_files("pneumoniamnist", data_dir)
    splits = _read_pneumonia(folder)
    return FederatedDataset(
        name="pneumoniamnist",
        modality="image",
        input_shape=(1, 28, 28),
        num_classes=2,
        class_names=list(PNEUMONIA_CLASSES),
        sites={"pooled": SiteData("pooled", splits["train"], splits["test"])},
        checksums=_checksums("pneumoniamnist", folder),
        central_test=splits["test"],
    )


# ------------------------------------------------------------------ ECG5000

ECG5000_CLASSES = ["normal", "R-on-T PVC", "PVC", "SP or EB", "unclassified"]
ECG5000_LENGTH = 140
_ECG_FRACTIONS = (0.6, 0.2, 0.2)


def ecg5000_splits(data_dir: str | Path | None = None, seed: int = 0) -> dict[str, Split]:
    """Stratified train/val/test (60/20/20) of the 500 UCR training beats, fixed by ``seed``.

    Classes are 0..4 (UCR's 1..5); x has shape (n, 1, 140). The two-member class stays in
    training (see `stratified_split`), so every class is present in ``train``.
    """
    return _read_ecg5000(ensure_dataset_files("ecg5000-train", data_dir), seed)


def _read_ecg5000(folder: Path, seed: int) -> dict[str, Split]:
    path = folder / "ECG5000_TRAIN.txt"
    try:
        table = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path} is not a whitespace-separated numeric table ({exc}).",
                        "replace it with the UCR ECG5000_TRAIN.txt (see DATASETS.md).") from exc
    if table.ndim != 2 or table.shape[1] != ECG5000_LENGTH + 1:
        raise DataError(f"{path} has shape {table.shape}; expected (n, {ECG5000_LENGTH + 1}).",
                        "replace it with the UCR ECG5000_TRAIN.txt (see DATASETS.md).")
    y = table[:, 0].astype(np.int64) - 1
    if y.min() < 0 or y.max() >= len(ECG5000_CLASSES):
        raise DataError(f"{path} has class labels outside 1..5.", "replace it with the UCR ECG5000_TRAIN.txt.")
    x = table[:, 1:].astype(np.float32)[:, None, :]
    parts = stratified_split(y, _ECG_FRACTIONS, seed)
    return {name: _split(x[idx], y[idx]) for name, idx in zip(("train", "val", "test"), parts)}


def load_ecg5000(data_dir: str | Path | None = None, seed: int = 0) -> FederatedDataset:
    """ECG5000 (UCR train half) as one 'pooled' site: train / test of `ecg5000_splits`,
    central_test = test. The val split is available from `ecg5000_splits`."""
    folder = ensure_dataset_files("ecg5000-train", data_dir)
    splits = _read_ecg5000(folder, seed)
    return FederatedDataset(
        name="ecg5000",
        modality="signal",
        input_shape=(1, ECG5000_LENGTH),
        num_classes=len(ECG5000_CLASSES),
        class_names=list(ECG5000_CLASSES),
        sites={"pooled": SiteData("pooled", splits["train"], splits["test"])},
        checksums=_checksums("ecg5000-train", folder),
        central_test=splits["test"],
    )


# ------------------------------------------------------------------ helpers


def _split(x: np.ndarray | torch.Tensor, y: np.ndarray) -> Split:
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return Split(xt.float(), torch.from_numpy(np.ascontiguousarray(y)).long())


def _checksums(name: str, folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of a verified folder (memoised in common.datadir: no re-reading)."""
    return {f.name: verify_file(folder / f.name, f) for f in builtin_dataset(name).files}
