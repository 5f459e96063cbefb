"""The hospital data formats, one module each, registered by name (the ``data-format`` setting).

Every format module exposes the same names: ``read`` (which imports its parser from
`common.datasets.loaders` on call) and ``FORMAT``, the `HospitalFormat` with its name, a
one-line description and the file signature `infer_format` recognises it by. Adding a format
is one new module here plus one registration line below; `load_hospital`, `infer_format`,
configuration validation and `medfed data check --help` then know it. Importing this package
is cheap (no parser is loaded), because configuration validation reads it in every process.
"""

from __future__ import annotations

from common.datasets.formats import dicom, image_folder, npz, table, text_table, ucr, wfdb
from common.datasets.formats.base import HospitalFormat
from common.registry import Registry

FORMATS: Registry[HospitalFormat] = Registry("hospital data format", setting="data-format")
FORMATS.register(npz.FORMAT.name, npz.FORMAT)
FORMATS.register(image_folder.FORMAT.name, image_folder.FORMAT)
FORMATS.register(dicom.FORMAT.name, dicom.FORMAT)
FORMATS.register(wfdb.FORMAT.name, wfdb.FORMAT)
FORMATS.register(ucr.FORMAT.name, ucr.FORMAT)
FORMATS.register(table.FORMAT.name, table.FORMAT)
FORMATS.register(text_table.FORMAT.name, text_table.FORMAT)
