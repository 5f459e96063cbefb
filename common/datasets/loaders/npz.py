"""MedMNIST-style ``.npz``: ``{train,val,test}_{images,labels}`` arrays.

Validation images are merged into training: a hospital keeps one train and one test split,
and model selection happens in the federation, not per site.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.datasets.loaders.base import RawData, file_sha256, reading, require_finite, require_nonempty_file
from common.datasets.loaders.images import match_channels
from common.errors import DataError

REQUIRED_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
OPTIONAL_KEYS = ("val_images", "val_labels")


def read_npz(path: Path, *, channels: int | None = None) -> RawData:
    require_nonempty_file(path)
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not a valid .npz file (not a zip archive; truncated or another format).",
            "copy or export the file again; an .npz is written by numpy.savez / savez_compressed.",
        )
    arrays: dict[str, np.ndarray] = {}
    with reading(path, ".npz file"), np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise DataError(
                f"{path} lacks the array(s) {', '.join(missing)}; it holds: {', '.join(sorted(keys)) or 'nothing'}.",
                "save the file with keys train_images, train_labels, test_images, test_labels "
                "(val_images/val_labels optional), as MedMNIST does.",
            )
        if ("val_images" in keys) != ("val_labels" in keys):
            raise DataError(f"{path} holds only one of val_images/val_labels.", "save both or neither.")
        for key in REQUIRED_KEYS + OPTIONAL_KEYS:
            if key in keys:
                arrays[key] = npz[key]  # reading each member may hit a truncated/corrupt entry

    parts = [p for p in ("train", "val", "test") if f"{p}_images" in arrays]
    xs, ys, splits, where = [], [], [], []
    shape = None
    for part in parts:
        x = _images(arrays[f"{part}_images"], f"{part}_images", path)
        y = _labels(arrays[f"{part}_labels"], f"{part}_labels", path)
        if len(x) != len(y):
            raise DataError(
                f"{path}: {part}_images has {len(x)} images but {part}_labels has {len(y)} labels.",
                "save one label per image.",
            )
        if shape is not None and x.shape[1:] != shape:
            raise DataError(
                f"{path}: {part}_images are {tuple(x.shape[1:])} (C,H,W) but the other images are {shape}.",
                "save every split at the same size and number of channels.",
            )
        shape = x.shape[1:]
        xs.append(x)
        ys.append(y)
        splits.append(np.full(len(y), "test" if part == "test" else "train"))
        where += [(part, i) for i in range(len(y))]

    x = match_channels(np.concatenate(xs), channels, path)
    labels = np.concatenate(ys)

    def locate(i: int) -> str:
        part, j = where[i]
        return f"{part}_images/{part}_labels index {j}"

    require_finite(x, path, locate)
    return RawData(
        x=x,
        labels=labels,
        modality="image",
        source=path,
        label_kind="index",
        split=np.concatenate(splits),
        locate=locate,
        checksums={path.name: file_sha256(path)},
    )


def _images(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(n,H,W) or (n,H,W,C) uint8 (or float in [0,1]) -> float32 (n,C,H,W) in [0,1]."""
    if a.ndim == 3:
        a = a[:, :, :, None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"{path}: {key} has shape {a.shape}; expected (n, H, W) or (n, H, W, C) with C in 1, 3, 4.",
            "save images as (n, H, W) grayscale or (n, H, W, 3) RGB arrays.",
        )
    if len(a) == 0:
        raise DataError(f"{path}: {key} is empty (0 images).", "save at least one image in every split.")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float32)
        finite = np.isfinite(x)
        if finite.all() and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"{path}: {key} is floating point with values in [{x.min():.3g}, {x.max():.3g}]; "
                "float images must lie in [0, 1].",
                "save uint8 images (0..255) or floats scaled to [0, 1].",
            )
    else:
        raise DataError(
            f"{path}: {key} has dtype {a.dtype}; expected uint8 (0..255) or float in [0, 1].",
            "convert the images to uint8 before saving.",
        )
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _labels(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(n,1) or (n,) integer labels -> (n,) int64; multi-label arrays are refused."""
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(
            f"{path}: {key} has shape {a.shape}; expected (n,) or (n, 1) (one class per image).",
            "multi-label data is not supported; save a single class index per image.",
        )
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.floating):
        ok = np.isfinite(a) & (a == np.round(a))
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(
                f"{path}: {key}[{i}] = {a[i]!r} is not a whole-number class index.",
                "save labels as integers 0..K-1.",
            )
        return a.astype(np.int64)
    raise DataError(
        f"{path}: {key} has dtype {a.dtype}; expected integer class indices.",
        "save labels as integers 0..K-1.",
    )
