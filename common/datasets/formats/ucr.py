"""``ucr``: a UCR-style time-series text file (reader: `common.datasets.loaders.signals`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.signals import read_ucr

    return read_ucr(path)


FORMAT = HospitalFormat(
    name="ucr",
    description="a time-series text file: one series per line, class label first",
    read=read,
    suffixes=(".txt", ".tsv"),
)
