"""What every reader shares: the `RawData` hand-over, error wrapping and small checks."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import DataError, MedfedError

SPLITS = ("train", "test")


@dataclass
class RawData:
    """A reader's output, before labels are encoded and the data is split.

    ``labels`` are as found in the file (ints, floats or strings). ``label_kind`` says how to
    turn them into class indices: ``"index"`` (integers that already are class indices, checked
    for range), ``"categorical"`` (any values, mapped to 0..K-1 in sorted order) or ``"fixed"``
    (already indices into ``class_names``). ``locate(i)`` names where example ``i`` came from,
    so label errors can point at a line of a file.
    """

    x: np.ndarray
    labels: np.ndarray
    modality: str
    source: Path
    label_kind: str = "index"
    class_names: list[str] | None = None
    split: np.ndarray | None = None  # "train"/"test" per example, or None -> stratified split
    locate: Callable[[int], str] = field(default=lambda i: f"example {i + 1}")
    checksums: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def reading(path: Path | str, what: str = "file", fix: str = "", where: str = "") -> Iterator[None]:
    """Turn any failure of a third-party parser into a `DataError` naming ``path``.

    numpy, Pillow, pydicom, wfdb, pandas and pyarrow raise a zoo of exception types on malformed
    input (BadZipFile, EOFError, OSError, ValueError, struct.error, IndexError, ...); for a user's
    file all of them mean the same thing: this file cannot be read. Only the parser call sits
    inside this block, so programming errors elsewhere still surface as themselves.
    """
    try:
        yield
    except (MedfedError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        detail = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
        raise DataError(
            f"Cannot read {what} {path}{' ' + where if where else ''}: {type(exc).__name__}"
            + (f": {detail}" if detail else "")
            + ".",
            fix
            or "check that the file is complete (not truncated) and in the expected format, "
            "then export or copy it again.",
        ) from exc


def require_exists(path: Path, what: str = "file") -> None:
    if not path.exists():
        raise DataError(f"The {what} {path} does not exist.", "check the path (and --format) and try again.")


def require_nonempty_file(path: Path) -> None:
    require_exists(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"The file {path} is empty (0 bytes).", "export the data again; the copy is empty.")


def require_finite(x: np.ndarray, source: Path, locate: Callable[[int], str]) -> None:
    """Reject NaN/inf, naming the example (via ``locate``) and the position inside it."""
    finite = np.isfinite(x.reshape(len(x), -1))
    if finite.all():
        return
    example, pos = (int(v) for v in np.argwhere(~finite)[0])
    bad = int((~finite).any(axis=1).sum())
    raise DataError(
        f"{source} holds NaN or infinite values: first at {locate(example)}, value index {pos} "
        f"({bad} example(s) affected).",
        "fill or drop the missing values before export; medfed does not impute silently.",
    )


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_labels_csv(folder: Path, name: str) -> pd.DataFrame:
    """Read the ``filename,label[,split]`` CSV that goes with an image or DICOM folder.

    Returns a frame with string ``filename``, raw ``label`` and (if present) ``split``, plus
    ``line`` (the CSV line number, header = line 1) for error messages.
    """
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"The labels file {path} does not exist.",
            f"put a CSV named {name} with columns filename,label[,split] into {folder} "
            "(or pass its name with labels_csv / --labels-csv).",
        )
    require_nonempty_file(path)
    with reading(path, "labels CSV"):
        df = pd.read_csv(path, dtype={"filename": str}, skipinitialspace=True)
    missing = [c for c in ("filename", "label") if c not in df.columns]
    if missing:
        raise DataError(
            f"The labels file {path} lacks column(s) {', '.join(missing)}; it has: "
            f"{', '.join(map(str, df.columns)) or 'no columns'}.",
            "the first line must be a header naming at least the columns filename and label "
            "(optionally split with values train/test).",
        )
    if df.empty:
        raise DataError(f"The labels file {path} has a header but no rows.", "list one image per row.")
    df = df.assign(line=np.arange(len(df)) + 2)
    for col in ("filename", "label"):
        empty = df[col].isna()
        if empty.any():
            line = int(df.loc[empty, "line"].iloc[0])
            raise DataError(
                f"The labels file {path} has an empty {col} on line {line}.",
                f"fill in the {col} or delete that line.",
            )
    df["filename"] = df["filename"].astype(str).str.strip()
    dup = df["filename"].duplicated()
    if dup.any():
        row = df[dup].iloc[0]
        raise DataError(
            f"The labels file {path} lists {row['filename']} more than once (again on line {row['line']}).",
            "list each file once.",
        )
    if "split" in df.columns:
        df["split"] = df["split"].astype(str).str.strip().str.lower()
        bad = ~df["split"].isin(SPLITS)
        if bad.any():
            row = df[bad].iloc[0]
            raise DataError(
                f"The labels file {path} has split {row['split']!r} on line {row['line']}.",
                "use train or test (or drop the split column for an automatic stratified split).",
            )
    return df


def split_column(values: pd.Series | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=str)
