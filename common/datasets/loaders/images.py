"""Image folders (PNG/JPEG + labels CSV) and DICOM folders (+ labels CSV).

Both produce float32 (n, C, H, W) in [0, 1] at ``image_size`` x ``image_size``. Images are
resized to a square (aspect ratio not kept) because a federation needs one input shape for
every site; prepare crops beforehand if the aspect ratio matters for the task.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from common.datasets.loaders.base import (
    RawData,
    file_sha256,
    read_labels_csv,
    reading,
    require_exists,
    require_finite,
    split_column,
)
from common.errors import ConfigError, DataError

MIN_SIZE, MAX_SIZE = 28, 224
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def check_image_options(image_size: int, channels: int | None) -> None:
    if not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ConfigError(
            f"image_size={image_size!r} is out of range.", f"use an integer from {MIN_SIZE} to {MAX_SIZE}."
        )
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels={channels!r} is not supported.", "use 1 (grayscale), 3 (RGB) or leave it unset.")


def match_channels(x: np.ndarray, channels: int | None, source: Path) -> np.ndarray:
    """Bring (n, C, H, W) to the requested channel count: drop alpha, gray<->RGB.

    RGB -> gray uses the ITU-R 601 luma weights, the same as Pillow's ``convert("L")``.
    """
    if x.shape[1] == 4:  # RGBA: the alpha channel carries no clinical information
        x = x[:, :3]
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    return (x * weights).sum(axis=1, keepdims=True).astype(np.float32)


# ----------------------------------------------------------------------------- image folder
def read_image_folder(
    folder: Path, *, image_size: int = 28, channels: int | None = None, labels_csv: str = "labels.csv"
) -> RawData:
    check_image_options(image_size, channels)

    def decode(file: Path) -> np.ndarray:
        with Image.open(file) as img:
            img.load()  # decode now: truncated/corrupt files fail here, not later
            return _pil_to_array(img, image_size)

    fix = "replace the file with a valid PNG or JPEG, or delete its line."
    images, table, csv_path = _read_listed(folder, labels_csv, "image folder", "image", fix, decode)
    return _image_data(images, channels, table, csv_path, labels_csv)


def _pil_to_array(img: Image.Image, size: int) -> np.ndarray:
    """A decoded Pillow image -> float32 (C, size, size) in [0, 1]; C is 1 or 3 (alpha dropped)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float grayscale (common for medical PNGs): scale by range, not clipped to 8 bits
        a = np.asarray(img, dtype=np.float32)
        a = _minmax(a) if img.mode in ("I", "F") else a / 65535.0
        t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
        return _resize(t, size)[0].numpy()
    img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


# ----------------------------------------------------------------------------- DICOM
def read_dicom_folder(
    folder: Path, *, image_size: int = 28, channels: int | None = None, labels_csv: str = "labels.csv"
) -> RawData:
    import pydicom  # imported here: only DICOM sites pay for it
    from pydicom.pixels import apply_modality_lut

    check_image_options(image_size, channels)

    def decode(file: Path) -> tuple[np.ndarray, bool]:
        ds = pydicom.dcmread(file)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise DataError(
                f"The DICOM file {file} holds {frames} frames; one 2-D image per file is expected.",
                "export one frame per file (or the frame used for diagnosis).",
            )
        # RescaleSlope/Intercept (or a Modality LUT) -> physical units such as Hounsfield
        pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        return pixels, str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1"

    def convert(file: Path, read: tuple[np.ndarray, bool]) -> np.ndarray:
        return _dicom_to_array(read[0], image_size, read[1], file)

    fix = "export the image again as a complete DICOM file, or delete its line."
    images, table, csv_path = _read_listed(folder, labels_csv, "DICOM folder", "DICOM file", fix, decode, convert)
    return _image_data(images, channels, table, csv_path, labels_csv, finite=True)


def _read_listed(
    folder: Path,
    labels_csv: str,
    folder_kind: str,
    what: str,
    fix: str,
    decode: Callable[[Path], Any],
    convert: Callable[[Path, Any], np.ndarray] | None = None,
) -> tuple[list[np.ndarray], pd.DataFrame, Path]:
    """Decode every file the labels CSV lists, each error naming its CSV line; returns the
    arrays, the CSV's table and its path.

    Image folders and DICOM folders share this loop; only ``decode`` (the parser call, inside
    `reading`) and ``convert`` (our own checks and scaling, outside it) differ.
    """
    _require_folder(folder, folder_kind)
    table = read_labels_csv(folder, labels_csv)
    csv_path = folder / labels_csv
    images: list[np.ndarray] = []
    for row in table.itertuples(index=False):
        file = folder / row.filename
        where = f"(line {row.line} of {csv_path})"
        if not file.is_file():
            raise DataError(
                f"The {what} {file} listed on line {row.line} of {csv_path} does not exist.",
                "copy the missing file into the folder or delete its line from the CSV.",
            )
        with reading(file, what, fix, where):
            read = decode(file)
        images.append(convert(file, read) if convert else read)
    return images, table, csv_path


def _image_data(
    images: list[np.ndarray],
    channels: int | None,
    table: pd.DataFrame,
    csv_path: Path,
    labels_csv: str,
    *,
    finite: bool = False,
) -> RawData:
    """Stack per-file (C, H, W) arrays at one channel count and label them from the CSV.

    ``finite`` checks for NaN/inf: DICOM's modality LUT can produce them, 8-bit images cannot.
    """
    want = channels or (3 if any(a.shape[0] == 3 for a in images) else 1)
    x = np.stack([match_channels(a[None], want, csv_path)[0] for a in images]).astype(np.float32)
    lines = table["line"].to_numpy()
    locate = lambda i: f"line {lines[i]} of {csv_path}"  # noqa: E731
    if finite:
        require_finite(x, csv_path, locate)
    return RawData(
        x=x,
        labels=_csv_labels(table["label"]),
        modality="image",
        source=csv_path,
        label_kind=_label_kind(table["label"]),
        split=split_column(table.get("split")),
        locate=locate,
        checksums={labels_csv: file_sha256(csv_path)},
    )


def _dicom_to_array(pixels: np.ndarray, size: int, inverted: bool, file: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) physical values -> (C, size, size) scaled to [0, 1] per image.

    Per-image min-max scaling because DICOM value ranges differ by scanner and protocol;
    MONOCHROME1 (white = low value) is inverted so bright always means dense.
    """
    if pixels.ndim == 2:
        pixels = pixels[None]
    elif pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels.transpose(2, 0, 1)
    else:
        raise DataError(
            f"The DICOM file {file} has pixel data of shape {pixels.shape}; a 2-D grayscale or RGB image is expected.",
            "export a single 2-D image per file.",
        )
    if not np.isfinite(pixels).all():
        raise DataError(f"The DICOM file {file} has NaN or infinite pixel values.", "export the image again.")
    a = _minmax(pixels)
    if inverted:
        a = 1.0 - a
    return _resize(torch.from_numpy(np.ascontiguousarray(a))[None], size)[0].numpy()


# ----------------------------------------------------------------------------- shared
def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    """(n, C, H, W) -> (n, C, size, size); antialiased bilinear so downscaling does not alias."""
    if tuple(t.shape[-2:]) == (size, size):
        return t.float()
    out = F.interpolate(t.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _require_folder(folder: Path, what: str) -> None:
    require_exists(folder, what)
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, but the {what} format expects a folder.", "pass the folder path.")


def _csv_labels(col: pd.Series) -> np.ndarray:
    return col.to_numpy() if _label_kind(col) == "index" else col.astype(str).str.strip().to_numpy()


def _label_kind(col: pd.Series) -> str:
    """Whole numbers are class indices; anything else (names) is mapped in sorted order."""
    return "index" if pd.api.types.is_integer_dtype(col) else "categorical"
