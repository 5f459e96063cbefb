"""``table``: CSV or Parquet, one row per record (reader: `common.datasets.loaders.table`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData

PARQUET_SUFFIXES = (".parquet", ".pq")


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.table import read_table

    return read_table(path, label_column=options.label_column)


FORMAT = HospitalFormat(
    name="table",
    description="a CSV or Parquet table: one row per record, a label column, numeric features",
    read=read,
    suffixes=(".csv", *PARQUET_SUFFIXES),
)
