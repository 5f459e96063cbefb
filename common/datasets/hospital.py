"""A hospital's own data -> a one-site `FederatedDataset`, checked before anything trains on it.

`load_hospital` reads any registered format (`common.datasets.formats.FORMATS`, docs/DATA.md),
encodes labels, makes a stratified train/test split when the files carry none, and refuses anything a
federation could silently mis-learn from: NaN/inf, wrong shapes, labels out of range, empty
splits or a training split with a single class. Every refusal is a `DataError` naming the
file (and row/column where known) and the fix, never a library traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.datasets.check import check_dataset
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.datasets.formats import FORMATS
from common.datasets.formats.base import ReadOptions
from common.datasets.loaders.base import RawData
from common.datasets.loaders.signals import DEFAULT_WINDOW_S, ucr_label_name
from common.errors import ConfigError, DataError


def load_hospital(
    path: str | Path,
    fmt: str | None,
    *,
    site_name: str | None = None,
    image_size: int = 28,
    channels: int | None = None,
    label_column: str = "label",
    labels_csv: str = "labels.csv",
    test_fraction: float = 0.2,
    seed: int = 0,
    window: tuple[float, float] = DEFAULT_WINDOW_S,
    leads: Sequence[int | str] | None = None,
    num_classes: int | None = None,
    text_column: str = "text",
    max_tokens: int = 256,
    hash_buckets: int = 8192,
) -> FederatedDataset:
    """Load one hospital's files as a single-site `FederatedDataset`.

    ``fmt`` names a registered format (None or "" infers it from the path, see `infer_format`).
    ``image_size``/``channels``/``labels_csv`` apply to image folders and DICOM (npz keeps its
    own size); ``window`` (seconds before, after the R peak) and ``leads`` to WFDB;
    ``label_column`` to tables; ``text_column``, ``max_tokens`` and ``hash_buckets`` (the
    hashing tokeniser, common/datasets/tokenise.py) to text tables. When the files carry no
    train/test split, a stratified split with ``test_fraction`` and ``seed`` is made. ``num_classes`` fixes the number of classes for
    integer labels (needed when a class has no example at this site); by default it is the
    largest label + 1 and every class must occur.
    """
    path = Path(path).expanduser()
    hospital_format = FORMATS.get(fmt or infer_format(path))
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise ConfigError(f"test_fraction={test_fraction!r} must be between 0 and 1 (exclusive).", "use e.g. 0.2.")
    if num_classes is not None and num_classes < 2:
        raise ConfigError(f"num_classes={num_classes} must be at least 2.", "pass the task's number of classes.")
    if not hospital_format.exists(path):
        raise DataError(f"The data path {path} does not exist.", "check the path (data-path / --path).")

    options = ReadOptions(
        image_size=image_size,
        channels=channels,
        label_column=label_column,
        labels_csv=labels_csv,
        window=window,
        leads=leads,
        text_column=text_column,
        max_tokens=max_tokens,
        hash_buckets=hash_buckets,
    )
    raw = hospital_format.read(path, options)

    y, class_names = encode_labels(raw, num_classes)
    if raw.split is not None:
        is_test = raw.split == "test"
    else:
        is_test = stratified_test_mask(y, test_fraction, seed, raw.source)
    name = site_name or (path.name if path.is_dir() else path.stem) or "site"
    site = SiteData(name, Split.of(raw.x[~is_test], y[~is_test]), Split.of(raw.x[is_test], y[is_test]))
    _require_usable_splits(site, class_names, raw.source, explicit=raw.split is not None)
    ds = FederatedDataset(
        name=name,
        modality=raw.modality,
        input_shape=tuple(int(d) for d in raw.x.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        sites={name: site},
        checksums=raw.checksums,
    )
    problems = check_dataset(ds)
    if problems:  # defence in depth: the readers should have caught these with a better message
        raise DataError(
            f"{raw.source} failed the dataset checks: " + "; ".join(problems), "fix the data and try again."
        )
    return ds


def infer_format(path: Path) -> str:
    """The one registered format whose signature fits ``path``; else ask for ``--format``.

    A file (or a path that does not exist) is recognised by its suffix, then as a record named
    without its suffix (WFDB); a folder by the files it holds (see `HospitalFormat`).
    """
    path = Path(path)
    formats = FORMATS.items()
    if path.is_file() or not path.exists():
        found = [name for name, f in formats if f.names_file(path)] or [
            name for name, f in formats if f.names_record(path)
        ]
        if not found and not path.exists():
            raise DataError(f"The data path {path} does not exist.", "check the path (data-path / --path).")
        return _only(found, f"Cannot tell the data format of {path} from its name")
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    found = [name for name, f in formats if f.fits_folder(path, suffixes)]
    signatures = " or ".join(f.folder_signature() for _, f in formats if f.folder_suffixes)
    return _only(found, f"Cannot tell the data format of the folder {path}", f"it holds no {signatures}")


def _only(found: list[str], problem: str, why_none: str = "") -> str:
    if len(found) == 1:
        return found[0]
    why = f"it could be {' or '.join(found)}" if found else why_none
    raise ConfigError(
        f"{problem}{': ' + why if why else ''}.",
        f"pass --format (data-format) with one of: {', '.join(FORMATS)}.",
    )


def encode_labels(raw: RawData, num_classes: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Raw labels -> int64 class indices and the class names, per ``raw.label_kind``."""
    labels = raw.labels
    if len(labels) == 0:
        raise DataError(f"{raw.source} holds no examples.", "export the data again; it is empty.")
    distinct = pd.unique(pd.Series(labels))
    if len(distinct) < 2:
        only = ucr_label_name(distinct[0]) if raw.class_names is None else raw.class_names[int(distinct[0])]
        raise DataError(
            f"{raw.source}: only class {only!r} present in all {len(labels)} examples; "
            "a classifier needs at least two classes to learn from.",
            "add examples of the other class(es) (this site cannot train alone on one class).",
        )
    if raw.label_kind == "fixed":
        assert raw.class_names is not None
        return labels.astype(np.int64), list(raw.class_names)
    if raw.label_kind == "categorical":
        numeric = pd.to_numeric(pd.Series(labels), errors="coerce")
        keys = numeric.to_numpy() if numeric.notna().all() else np.asarray(labels, dtype=str)
        classes, y = np.unique(keys, return_inverse=True)  # sorted, numerically when numbers
        return y.astype(np.int64), [ucr_label_name(c) for c in classes]
    y = np.asarray(labels, dtype=np.int64)
    if (y < 0).any():
        i = int(np.argmax(y < 0))
        raise DataError(
            f"{raw.source}: label {y[i]} at {raw.locate(i)} is negative.", "class labels must be integers 0..K-1."
        )
    top = int(y.max())
    if num_classes is not None:
        if top >= num_classes:
            i = int(np.argmax(y >= num_classes))
            raise DataError(
                f"{raw.source}: label {y[i]} at {raw.locate(i)} is out of range for {num_classes} classes "
                f"(0..{num_classes - 1}).",
                "fix the label, or raise num_classes if the task really has more classes.",
            )
        k = num_classes
    else:
        k = top + 1
        unused = sorted(set(range(k)) - set(np.unique(y).tolist()))
        if unused:
            i = int(np.argmax(y == top))
            shown = ", ".join(map(str, unused[:10])) + (" ..." if len(unused) > 10 else "")
            raise DataError(
                f"{raw.source}: label {top} at {raw.locate(i)} is out of range: labels must be 0..K-1, but classes "
                f"{shown} never occur (found labels {', '.join(map(str, np.unique(y)[:10]))}).",
                "renumber the classes to 0..K-1, or pass num_classes (--num-classes) if this site "
                "simply has no examples of some classes.",
            )
    return y, [str(i) for i in range(k)]


def stratified_test_mask(y: np.ndarray, test_fraction: float, seed: int, source: Path) -> np.ndarray:
    """Per class, move round(n_c * test_fraction) examples to test (seeded), keeping >= 1 in train.

    Hand-rolled rather than sklearn's StratifiedShuffleSplit because that refuses classes with
    a single example, which small hospitals do have (they stay in train here).
    """
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), dtype=bool)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        n_test = min(int(round(len(idx) * test_fraction)), len(idx) - 1)
        is_test[rng.permutation(idx)[:n_test]] = True
    if not is_test.any():
        raise DataError(
            f"{source} holds too few examples ({len(y)}) for a test split at test_fraction={test_fraction}.",
            "add more examples, raise test_fraction, or give an explicit split (a split column / npz test arrays).",
        )
    return is_test


def _require_usable_splits(site: SiteData, class_names: list[str], source: Path, *, explicit: bool) -> None:
    where = "its train split" if explicit else "it"
    if len(site.train) == 0:
        raise DataError(
            f"{source}: the train split is empty.", "mark some examples as train (or drop the split column)."
        )
    if len(site.test) == 0:
        raise DataError(f"{source}: the test split is empty.", "mark some examples as test (or drop the split column).")
    present = sorted(set(site.train.y.tolist()))
    if len(present) < 2:
        raise DataError(
            f"{source}: only class {class_names[present[0]]!r} present in {where} "
            f"({len(site.train)} training examples); "
            "a classifier needs at least two classes to learn from.",
            "add examples of the other class(es) to the training data (this site cannot train alone on one class).",
        )
