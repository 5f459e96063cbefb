"""``wfdb``: ECG records with beat annotations, one window per beat (reader: `common.datasets.loaders.signals`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader


FORMAT = HospitalFormat(
    name="wfdb",
    description="a folder of WFDB records or one record: .hea/.dat with .atr beat annotations",
    read=lazy_reader("signals.read_wfdb", "window", "leads"),
    suffixes=(".hea", ".atr", ".dat"),
    folder_suffixes=(".hea",),
    record_suffix=".hea",
)
