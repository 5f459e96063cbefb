"""What a hospital format is: a reader plus the file names it is recognised by.

A `HospitalFormat` is plain data and a function reference, so the `FORMATS` registry can be
read (configuration validation, help texts, `infer_format`) without loading any parser: each
format's ``read`` imports its reader from `common.datasets.loaders` when it is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.datasets.loaders.base import RawData


@dataclass(frozen=True)
class ReadOptions:
    """The reader settings of `load_hospital`; each format uses the ones that apply to it."""

    image_size: int
    channels: int | None
    label_column: str
    labels_csv: str
    window: tuple[float, float]
    leads: Sequence[int | str] | None
    text_column: str = "text"
    max_tokens: int = 256
    hash_buckets: int = 8192


Reader = Callable[[Path, ReadOptions], "RawData"]


def lazy_reader(function: str, *options: str) -> Reader:
    """The `Reader` that calls ``function`` of `common.datasets.loaders` ("module.name") with the
    named ``options`` as keywords, importing it only when called: formats differ in which reader
    and which options, not in how they are wired, so no format writes its own wrapper."""
    module, name = function.rsplit(".", 1)

    def read(path: Path, read_options: ReadOptions) -> RawData:
        reader = getattr(importlib.import_module(f"common.datasets.loaders.{module}"), name)
        return reader(path, **{option: getattr(read_options, option) for option in options})

    return read


@dataclass(frozen=True)
class HospitalFormat:
    """One way a hospital ships its data (the ``data-format`` setting, ``--format``).

    Inference (`common.datasets.hospital.infer_format`) reads the signature fields:
    ``suffixes`` name a file in this format; a folder is in this format when it holds a file
    with one of ``folder_suffixes`` (and the ``folder_marker`` file, when one is set);
    ``record_suffix`` lets a record be named without its suffix (WFDB's ``data/100`` for
    ``data/100.hea``).
    """

    name: str
    description: str  # one line, for help texts
    read: Reader
    suffixes: tuple[str, ...] = ()
    folder_suffixes: tuple[str, ...] = ()
    folder_marker: str = ""
    record_suffix: str = ""

    def names_file(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    def names_record(self, path: Path) -> bool:
        return bool(self.record_suffix) and path.with_suffix(self.record_suffix).is_file()

    def fits_folder(self, folder: Path, suffixes: set[str]) -> bool:
        """Whether a folder holding files with ``suffixes`` looks like this format."""
        if not suffixes & set(self.folder_suffixes):
            return False
        return not self.folder_marker or (folder / self.folder_marker).is_file()

    def folder_signature(self) -> str:
        """What such a folder holds, for messages: ".png/.jpg/.jpeg files with a labels.csv"."""
        files = "/".join(self.folder_suffixes) + " files"
        return f"{files} with a {self.folder_marker}" if self.folder_marker else files

    def exists(self, path: Path) -> bool:
        return path.exists() or self.names_record(path)
