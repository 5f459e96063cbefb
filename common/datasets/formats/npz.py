"""``npz``: a MedMNIST-style NumPy archive (reader: `common.datasets.loaders.npz`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader


FORMAT = HospitalFormat(
    name="npz",
    description="MedMNIST-style NumPy archive with {train,val,test}_{images,labels} arrays",
    read=lazy_reader("npz.read_npz", "channels"),
    suffixes=(".npz",),
)
