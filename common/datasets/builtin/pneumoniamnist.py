"""PneumoniaMNIST (MedMNIST v2): 28x28 chest X-rays, normal vs pneumonia, one pooled site.

The official splits are ``train`` (4708), ``val`` (524) and ``test`` (624). The dataset has no
hospitals of its own: `common.datasets.federated` partitions its training images into virtual
sites and keeps the official test split as the operator's central test set and the official
val split as the operator's validation set.
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
    folder="pneumoniamnist",
    source="https://zenodo.org/records/10519652 (MedMNIST v2)",
    files=(
        DatasetFile(
            "pneumoniamnist.npz",
            "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",
            # the shared copy (same splits, reassembled, different bytes) ...
            sha256=("20568c3c8f7ddebe016ab049006f1eb241ab4249e8eff13c3a5d09d11900d8b0",),
            # ... or the official Zenodo file.
            md5=("28209eda62fecd6e6a2d98b1501bb15f",),
        ),
    ),
)

INFO = DatasetInfo(
    modality="image",
    default_partition="dirichlet",
    input_shape=(1, 28, 28),
    num_classes=2,
    class_names=("normal", "pneumonia"),
)


def splits(data_dir: str | Path | None = None) -> dict[str, Split]:
    """The official MedMNIST splits ``train``, ``val``, ``test``.

    Images are float32 in [0, 1], shape (n, 1, 28, 28). The shared copy lists all normal
    training images first: never rely on the order (partitioners and loaders shuffle).
    """
    return _read(ensure_files(FILES, data_dir))


def load(data_dir: str | Path | None = None, seed: int = 0) -> FederatedDataset:
    """One 'pooled' site (official train / test); central_test = official test, central_val =
    official val (524 images: the server chooses the operating point on it). ``seed`` is
    unused: the splits are MedMNIST's own.
    """
    from common.datasets.contract import SiteData

    folder = ensure_files(FILES, data_dir)
    parts = _read(folder)
    return assemble(DATASET, folder, {"pooled": SiteData("pooled", parts["train"], parts["test"])}, parts["test"],
                    central_val=parts["val"])


def _read(folder: Path) -> dict[str, Split]:
    import numpy as np
    import torch

    from common.datasets.contract import Split

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
            out[split] = Split.of(x, labels.reshape(-1).astype(np.int64))
    return out


DATASET = BuiltinDataset(name="pneumoniamnist", files=FILES, info=INFO, load=load)
