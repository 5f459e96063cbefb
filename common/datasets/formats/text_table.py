"""``text-table``: a hospital's notes as CSV or Parquet, one row per note, a text and a label
column (reader: `common.datasets.loaders.text`). It shares its suffixes with ``table``, so it is
never inferred: name it with ``--format text-table`` (``data-format``)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader

FORMAT = HospitalFormat(
    name="text-table",
    description="a CSV or Parquet table of notes: one row per note, a text column and a label column",
    read=lazy_reader("text.read_text_table", "text_column", "label_column", "max_tokens", "hash_buckets"),
)
