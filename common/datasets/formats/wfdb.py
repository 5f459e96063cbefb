"""``wfdb``: ECG records with beat annotations, one window per beat (reader: `common.datasets.loaders.signals`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.signals import read_wfdb

    return read_wfdb(path, window=options.window, leads=options.leads)


FORMAT = HospitalFormat(
    name="wfdb",
    description="a folder of WFDB records or one record: .hea/.dat with .atr beat annotations",
    read=read,
    suffixes=(".hea", ".atr", ".dat"),
    folder_suffixes=(".hea",),
    record_suffix=".hea",
)
