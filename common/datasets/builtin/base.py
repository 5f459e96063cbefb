"""The contract every built-in dataset module fulfils (FLamby's one-module-per-dataset idea).

A dataset module declares, in one place: its files (`DatasetFiles`: checksums and official
URLs), its `DatasetInfo`, and its loader; it bundles them as ``DATASET = BuiltinDataset(...)``,
which `common.datasets.builtin` registers under ``DATASET.name``. Everything here is plain
data, so reading the registry (config validation, `medfed server submit`, help texts) costs
no torch, pandas or numpy: dataset modules import those inside their loaders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.download import DatasetFiles, verified_checksums

if TYPE_CHECKING:
    from common.datasets.contract import FederatedDataset, SiteData, Split


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a partitioner need to know about a dataset, without loading it.

    ``default_partition`` is what `medfed simulate` and `medfed data check` use when none is
    given. ``natural_sites`` names the dataset's own hospitals, in the order its loader returns
    them; a dataset without any is one pooled site that only virtual partitions can split.
    """

    modality: str  # one of common.datasets.contract.MODALITIES
    default_partition: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    natural_sites: tuple[str, ...] = ()


# (data_dir, seed) -> the dataset: its natural sites, or else one site named "pooled". The seed
# is for datasets whose own split is random (ECG5000), so one number reproduces a whole run.
Loader = Callable[[str | Path | None, int], "FederatedDataset"]


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset: its name (the ``dataset`` setting), files, info and loader."""

    name: str
    files: DatasetFiles
    info: DatasetInfo
    load: Loader


def assemble(
    dataset: BuiltinDataset,
    folder: Path,
    sites: dict[str, SiteData],
    central_test: Split | None = None,
    central_val: Split | None = None,
) -> FederatedDataset:
    """The `FederatedDataset` a built-in loader returns: its name, shapes and classes from
    ``dataset.info``, and the checksums of the files it read from ``folder``, verified."""
    from common.datasets.contract import FederatedDataset

    return FederatedDataset(
        name=dataset.name,
        modality=dataset.info.modality,
        input_shape=dataset.info.input_shape,
        num_classes=dataset.info.num_classes,
        class_names=list(dataset.info.class_names),
        sites=sites,
        checksums=verified_checksums(dataset.files, folder),
        central_test=central_test,
        central_val=central_val,
    )
