"""``ucr``: a UCR-style time-series text file (reader: `common.datasets.loaders.signals`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader


FORMAT = HospitalFormat(
    name="ucr",
    description="a time-series text file: one series per line, class label first",
    read=lazy_reader("signals.read_ucr"),
    suffixes=(".txt", ".tsv"),
)
