"""``dicom``: one 2-D DICOM image per file plus a labels CSV (reader: `common.datasets.loaders.images`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader


FORMAT = HospitalFormat(
    name="dicom",
    description="a folder of DICOM files, one 2-D image each, with a labels.csv of filename,label[,split]",
    read=lazy_reader("images.read_dicom_folder", "image_size", "channels", "labels_csv"),
    folder_suffixes=(".dcm",),
)
