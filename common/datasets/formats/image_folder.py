"""``image-folder``: PNG/JPEG images plus a labels CSV (reader: `common.datasets.loaders.images`)."""

from __future__ import annotations

from common.datasets.formats.base import HospitalFormat, lazy_reader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


FORMAT = HospitalFormat(
    name="image-folder",
    description="a folder of PNG/JPEG images with a labels.csv of filename,label[,split]",
    read=lazy_reader("images.read_image_folder", "image_size", "channels", "labels_csv"),
    folder_suffixes=IMAGE_SUFFIXES,
    folder_marker="labels.csv",
)
