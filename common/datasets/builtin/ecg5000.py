"""ECG5000 (UCR): 140-sample heartbeats in five classes, the 500 beats of UCR's training half.

A stratified train/val/test split (60/20/20) fixed by the run's seed; one pooled site that
`common.datasets.federated` partitions into virtual sites, keeping the test split as the
operator's central test set and the val split as its validation set. Classes are 0..4 (UCR's 1..5).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.builtin.base import BuiltinDataset, DatasetInfo, assemble
from common.datasets.download import DatasetFile, DatasetFiles, ensure_files
from common.errors import DataError

if TYPE_CHECKING:
    from common.datasets.contract import FederatedDataset, Split

FILES = DatasetFiles(
    folder="ecg5000-train",
    source="https://www.timeseriesclassification.com/description.php?Dataset=ECG5000",
    files=(
        DatasetFile(
            "ECG5000_TRAIN.txt",
            "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip",
            sha256=("0d96aff193311a6dc6111bf0dbd2f7d2313987fbf7a1da4a383d92563876057b",),
            archive_member="ECG5000_TRAIN.txt",
        ),
    ),
)

LENGTH = 140  # samples per beat

INFO = DatasetInfo(
    modality="signal",
    default_partition="dirichlet",
    input_shape=(1, LENGTH),
    num_classes=5,
    class_names=("normal", "R-on-T PVC", "PVC", "SP or EB", "unclassified"),
)

_FRACTIONS = (0.6, 0.2, 0.2)


def splits(data_dir: str | Path | None = None, seed: int = 0) -> dict[str, Split]:
    """Stratified ``train``/``val``/``test`` (60/20/20) of the 500 beats, fixed by ``seed``.

    x has shape (n, 1, 140). The two-member class stays in training (see `stratified_split`),
    so every class is present in ``train``.
    """
    return _read(ensure_files(FILES, data_dir), seed)


def load(data_dir: str | Path | None = None, seed: int = 0) -> FederatedDataset:
    """One 'pooled' site: train / test of `splits`, central_test = test, central_val = val. The
    seed also fixes the split, so one number reproduces the run."""
    from common.datasets.contract import SiteData

    folder = ensure_files(FILES, data_dir)
    parts = _read(folder, seed)
    return assemble(DATASET, folder, {"pooled": SiteData("pooled", parts["train"], parts["test"])}, parts["test"],
                    central_val=parts["val"])


def _read(folder: Path, seed: int) -> dict[str, Split]:
    import numpy as np

    from common.datasets.contract import Split
    from common.datasets.partition import stratified_split

    path = folder / "ECG5000_TRAIN.txt"
    try:
        table = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path} is not a whitespace-separated numeric table ({exc}).",
                        "replace it with the UCR ECG5000_TRAIN.txt (see DATASETS.md).") from exc
    if table.ndim != 2 or table.shape[1] != LENGTH + 1:
        raise DataError(f"{path} has shape {table.shape}; expected (n, {LENGTH + 1}).",
                        "replace it with the UCR ECG5000_TRAIN.txt (see DATASETS.md).")
    y = table[:, 0].astype(np.int64) - 1
    if y.min() < 0 or y.max() >= INFO.num_classes:
        raise DataError(f"{path} has class labels outside 1..5.", "replace it with the UCR ECG5000_TRAIN.txt.")
    x = table[:, 1:].astype(np.float32)[:, None, :]
    parts = stratified_split(y, _FRACTIONS, seed)
    return {name: Split.of(x[idx], y[idx]) for name, idx in zip(("train", "val", "test"), parts)}


DATASET = BuiltinDataset(name="ecg5000", files=FILES, info=INFO, load=load)
