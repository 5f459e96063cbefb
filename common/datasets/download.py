"""Built-in dataset files: fetched from their official home, verified, kept in the data directory.

A hospital deployment must never train on the wrong bytes, so every built-in dataset file is
checked against a known checksum before use. Files come from one place only: the data
directory (`common.datasets.datadir`). When a file is missing and the machine is online it is
fetched from its *official* public location, written atomically (temporary file + rename, so an
interrupted download never looks complete), verified and kept there. There is no fallback to
any other data (FLamby's silent switch to a debug dataset is exactly what we avoid): a missing
or corrupt file is an error that says which file to put where.

Each dataset declares its files as a `DatasetFiles` next to its loader
(`common.datasets.builtin.<name>.FILES`); this module is the only network access in medfed's
data layer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.datasets.datadir import ENV_VAR, resolve_data_dir
from common.errors import DataError, DatasetUnavailableError

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DatasetFile:
    """One file of a built-in dataset and every checksum we accept for it.

    ``sha256`` lists verified copies (the shared copy in DATASETS.md); ``md5`` lists official
    checksums published by the source (MedMNIST on Zenodo, the UCI files as checked by FLamby).
    A file passes if it matches any of them. ``archive_member`` names the file inside a zip
    at ``url`` when the source only ships an archive (UCR).
    """

    name: str
    url: str
    sha256: tuple[str, ...] = ()
    md5: tuple[str, ...] = ()
    archive_member: str | None = None


@dataclass(frozen=True)
class DatasetFiles:
    """The files of one dataset: the folder they live in below the data directory, and where
    they officially come from (named in every "put these files there" message)."""

    folder: str
    source: str  # human-readable official home page
    files: tuple[DatasetFile, ...]


def ensure_files(
    spec: DatasetFiles, data_dir: str | Path | None = None, *, download: bool = True
) -> Path:
    """Return ``<data_dir>/<folder>`` with every file of ``spec`` present and verified.

    Missing files are downloaded from their official location when ``download`` is true (and
    the machine is online); anything else is an error naming the file, the folder and the URL.
    """
    folder = resolve_data_dir(data_dir) / spec.folder
    for f in spec.files:
        path = folder / f.name
        if not path.is_file():
            if not download:
                raise _unavailable(spec, folder, f, "downloading is switched off")
            _fetch(spec, folder, f)
        verify_file(path, f)
    return folder


def verified_checksums(spec: DatasetFiles, folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of every file of ``spec`` in ``folder``, each verified (memoised:
    a folder that `ensure_files` just checked is not read again)."""
    return {f.name: verify_file(folder / f.name, f) for f in spec.files}


def verify_file(path: Path, spec: DatasetFile) -> str:
    """Check ``path`` against the accepted checksums of ``spec``; return its SHA-256."""
    sha = _digest(path, "sha256")
    if sha in spec.sha256:
        return sha
    if spec.md5 and _digest(path, "md5") in spec.md5:
        return sha
    accepted = [f"SHA-256 {s}" for s in spec.sha256] + [f"MD5 {m}" for m in spec.md5]
    raise DataError(
        f"{path} does not match any accepted checksum ({'; '.join(accepted)}); its SHA-256 is {sha}. "
        "The file is corrupt, truncated or not the expected dataset.",
        f"delete {path} and run again to download it from {spec.url}, "
        f"or replace it with a verified copy of {spec.name}.",
    )


# In-process memo so repeated loads do not re-hash the same unchanged file.
# ctime cannot be set by a copy tool, so a replaced file with the same size and mtime still misses.
_DIGEST_CACHE: dict[tuple[str, str, int, int, int, int], str] = {}


def _digest(path: Path, algorithm: str) -> str:
    st = path.stat()
    key = (str(path.resolve()), algorithm, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGEST_CACHE:
        with open(path, "rb") as fh:
            _DIGEST_CACHE[key] = hashlib.file_digest(fh, algorithm).hexdigest()
    return _DIGEST_CACHE[key]


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest``. The only network access in medfed's data layer (tests
    monkeypatch it). Raises OSError (``urllib.error.URLError`` is one) on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": "medfed-dataset-fetch"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def _fetch(spec: DatasetFiles, folder: Path, f: DatasetFile) -> None:
    """Download one file into ``folder`` atomically and verify it before it appears there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unavailable(spec, folder, f, f"the folder cannot be created ({exc})") from exc
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        raw = Path(tmp) / "download"
        try:
            _download(f.url, raw)
        except OSError as exc:  # offline, DNS, HTTP error, timeout, disk full
            raise _unavailable(spec, folder, f, f"the download failed ({exc})") from exc
        candidate = raw
        if f.archive_member is not None:
            candidate = Path(tmp) / f.name
            _extract_member(raw, f, candidate)
        try:
            verify_file(candidate, f)
        except DataError as exc:
            raise DataError(
                f"The file downloaded from {f.url} for {folder / f.name} failed verification: {exc.problem}",
                f"nothing was written to {folder}. Put a verified copy of {f.name} there by hand "
                "(see DATASETS.md for the checksums), or report the changed upstream file.",
            ) from exc
        os.replace(candidate, folder / f.name)


def _extract_member(archive: Path, f: DatasetFile, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if Path(m).name == f.archive_member]
            if not members:
                raise DataError(
                    f"The archive downloaded from {f.url} has no member {f.archive_member}.",
                    f"put a verified copy of {f.name} in the dataset folder by hand.",
                )
            with zf.open(members[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise DataError(
            f"The file downloaded from {f.url} is not a valid zip archive ({exc}).",
            f"put a verified copy of {f.name} in the dataset folder by hand.",
        ) from exc


def _unavailable(spec: DatasetFiles, folder: Path, f: DatasetFile, why: str) -> DatasetUnavailableError:
    missing = [g for g in spec.files if not (folder / g.name).is_file()] or [f]
    how = "; ".join(
        f"{g.name} from {g.url}" + (f" (extract {g.archive_member} from the zip)" if g.archive_member else "")
        for g in missing
    )
    return DatasetUnavailableError(
        f"Dataset {spec.folder} is not available: {folder / f.name} is missing and {why}.",
        f"put these files into {folder}: {how} (official source: {spec.source}); "
        f"or point --data-dir / ${ENV_VAR} at a folder that holds {spec.folder}/.",
    )
