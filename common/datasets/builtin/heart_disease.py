"""Fed-Heart-Disease: four hospitals' UCI heart-disease records, the natural sites (as in FLamby).

Rows with a missing value (after dropping slope/ca/thal) are dropped, leaving 303/261/46/130
rows; label = num > 0; FLamby's fixed train/test split per hospital: 199/104, 172/89, 30/16,
85/45. Unlike FLamby, cp and restecg stay as single numeric columns (10 features, not 13
dummies). Nothing is normalised here: each site normalises with its own training statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.builtin.base import BuiltinDataset, DatasetInfo, assemble
from common.datasets.download import DatasetFile, DatasetFiles, ensure_files
from common.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from common.datasets.contract import FederatedDataset

_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"

FILES = DatasetFiles(
    folder="uci-heart-disease",
    source="https://archive.ics.uci.edu/dataset/45/heart+disease",
    files=(
        DatasetFile(
            "processed.cleveland.data",
            _UCI + "processed.cleveland.data",
            sha256=("a74b7efa387bc9d108d7d0115d831fe9b414b29ae7124f331b622b4efa0427c8",),
            md5=("2d91a8ff69cfd9616aa47b59d6f843db",),
        ),
        DatasetFile(
            "processed.hungarian.data",
            _UCI + "processed.hungarian.data",
            sha256=("d1ad108f785768cd3d7e82dc522e6f5a61eea93cccfb3a46ee8076f73fc3d796",),
            md5=("22e96bee155b5973568101c93b3705f6",),
        ),
        DatasetFile(
            "processed.switzerland.data",
            _UCI + "processed.switzerland.data",
            sha256=("834a405ccf5b66ab4056bb77794adc8df0b7125186454c0a1d002d33c6c3b314",),
            md5=("9a87f7577310b3917730d06ba9349e20",),
        ),
        DatasetFile(
            "processed.va.data",
            _UCI + "processed.va.data",
            sha256=("e7c93d8d0d2acdadfa4c5e8de768e2191e7f618b952e29623f1f0d5949ff6b8f",),
            md5=("4249d03ca7711e84f4444768c9426170",),
        ),
    ),
)

# site name -> UCI file; the four hospitals are the natural sites (FLamby's centre order).
SITE_FILES = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va": "processed.va.data",
}
# The 14 UCI fields minus slope, ca, thal (10, 11, 12: mostly missing outside Cleveland) and num.
FEATURES = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak")

INFO = DatasetInfo(
    modality="tabular",
    default_partition="natural",
    input_shape=(len(FEATURES),),
    num_classes=2,
    class_names=("no disease", "disease"),
    natural_sites=tuple(SITE_FILES),
)

# FLamby's fixed split: 66 % train per centre, random_state 43, stratified on the binary label
# when both classes have more than two members (Switzerland has one negative: unstratified).
_TRAIN_FRACTION = 0.66
_RANDOM_STATE = 43


def load(data_dir: str | Path | None = None, seed: int = 0) -> FederatedDataset:
    """The 4 hospitals as sites with FLamby's split. ``seed`` is unused: the split is fixed."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from common.datasets.contract import SiteData, Split

    folder = ensure_files(FILES, data_dir)
    sites: dict[str, SiteData] = {}
    for site, file_name in SITE_FILES.items():
        x, y = _read_file(folder / file_name)
        stratify = y if all(np.sum(y == c) > 2 for c in (0, 1)) else None
        train_idx, test_idx = train_test_split(
            np.arange(len(y)),
            train_size=_TRAIN_FRACTION,
            test_size=1.0 - _TRAIN_FRACTION,
            random_state=_RANDOM_STATE,
            shuffle=True,
            stratify=stratify,
        )
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        sites[site] = SiteData(site, Split.of(x[train_idx], y[train_idx]), Split.of(x[test_idx], y[test_idx]))
    return assemble(DATASET, folder, sites)


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    import pandas as pd

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


DATASET = BuiltinDataset(name="heart-disease", files=FILES, info=INFO, load=load)
