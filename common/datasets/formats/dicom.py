"""``dicom``: one 2-D DICOM image per file plus a labels CSV (reader: `common.datasets.loaders.images`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.formats.base import HospitalFormat, ReadOptions

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData


def read(path: Path, options: ReadOptions) -> RawData:
    from common.datasets.loaders.images import read_dicom_folder

    return read_dicom_folder(
        path, image_size=options.image_size, channels=options.channels, labels_csv=options.labels_csv
    )


FORMAT = HospitalFormat(
    name="dicom",
    description="a folder of DICOM files, one 2-D image each, with a labels.csv of filename,label[,split]",
    read=read,
    folder_suffixes=(".dcm",),
)
