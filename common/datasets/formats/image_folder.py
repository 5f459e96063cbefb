"""``image-folder``: PNG/JPEG images plus a labels CSV (reader: `common.datasets.loaders.images`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.images import read_image_folder

    return read_image_folder(
        path, image_size=options.image_size, channels=options.channels, labels_csv=options.labels_csv
    )


FORMAT = HospitalFormat(
    name="image-folder",
    description="a folder of PNG/JPEG images with a labels.csv of filename,label[,split]",
    read=read,
    folder_suffixes=IMAGE_SUFFIXES,
    folder_marker="labels.csv",
)
