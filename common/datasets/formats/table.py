"""``table``: CSV or Parquet, one row per record (reader: `common.datasets.loaders.table`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader

PARQUET_SUFFIXES = (".parquet", ".pq")


FORMAT = HospitalFormat(
    name="table",
    description="a CSV or Parquet table: one row per record, a label column, numeric features",
    read=lazy_reader("table.read_table", "label_column"),
    suffixes=(".csv", *PARQUET_SUFFIXES),
)
