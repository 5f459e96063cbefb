"""``npz``: a MedMNIST-style NumPy archive (reader: `common.datasets.loaders.npz`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.npz import read_npz

    return read_npz(path, channels=options.channels)


FORMAT = HospitalFormat(
    name="npz",
    description="MedMNIST-style NumPy archive with {train,val,test}_{images,labels} arrays",
    read=read,
    suffixes=(".npz",),
)
