"""Where built-in datasets live, and how they get there verified.

A hospital deployment must never train on the wrong bytes, so every built-in dataset file is
checked against a known checksum before use. Files come from one place only: the data
directory (``--data-dir``, else ``$MEDFED_DATA_DIR``, else ``~/.cache/medfed/datasets``). When a
file is missing and the machine is online it is fetched from its *official* public location,
written atomically (temporary file + rename, so an interrupted download never looks complete),
verified and kept there. There is no fallback to any other data (FLamby's silent switch to a
debug dataset is exactly what we avoid): a missing or corrupt file is an error that says which
file to put where.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import DataError, DatasetUnavailableError

ENV_VAR = "MEDFED_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/medfed/datasets")
DOWNLOAD_TIMEOUT_S = 60.0


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (CLI ``--data-dir``) wins, then ``$MEDFED_DATA_DIR``,
    then ``~/.cache/medfed/datasets``. The folder does not have to exist yet."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR.expanduser()


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
class BuiltinDataset:
    folder: str
    files: tuple[DatasetFile, ...]
    source: str  # human-readable official home page
    aliases: tuple[str, ...] = field(default=())


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"
_PHYSIONET = "https://physionet.org/files/mitdb/1.0.0/"

BUILTIN_FILES: dict[str, BuiltinDataset] = {
    "uci-heart-disease": BuiltinDataset(
        folder="uci-heart-disease",
        source="https://archive.ics.uci.edu/dataset/45/heart+disease",
        aliases=("heart-disease",),
        files=(
            DatasetFile(
                "processed.cleveland.data",
                _UCI + "processed.cleveland.data",
                sha256=("a74b7efa387bc9d108d7d0115d831fe9b414b29ae7124f331b622b4efa0427c8",),
                md5=("2d91a8ff69cfd9616aa47b59d6f843db",),
            ),
            DatasetFile(
                "processed.hungarian.data",
                _UCI + "processed.hungarian.data",
                sha256=("d1ad108f785768cd3d7e82dc522e6f5a61eea93cccfb3a46ee8076f73fc3d796",),
                md5=("22e96bee155b5973568101c93b3705f6",),
            ),
            DatasetFile(
                "processed.switzerland.data",
                _UCI + "processed.switzerland.data",
                sha256=("834a405ccf5b66ab4056bb77794adc8df0b7125186454c0a1d002d33c6c3b314",),
                md5=("9a87f7577310b3917730d06ba9349e20",),
            ),
            DatasetFile(
                "processed.va.data",
                _UCI + "processed.va.data",
                sha256=("e7c93d8d0d2acdadfa4c5e8de768e2191e7f618b952e29623f1f0d5949ff6b8f",),
                md5=("4249d03ca7711e84f4444768c9426170",),
            ),
        ),
    ),
    "pneumoniamnist": BuiltinDataset(
        folder="pneumoniamnist",
        source="https://zenodo.org/records/10519652 (MedMNIST v2)",
        files=(
            DatasetFile(
                "pneumoniamnist.npz",
                "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",
                # the shared copy (same splits, reassembled, different bytes) ...
                sha256=("20568c3c8f7ddebe016ab049006f1eb241ab4249e8eff13c3a5d09d11900d8b0",),
                # ... or the official Zenodo file.
                md5=("28209eda62fecd6e6a2d98b1501bb15f",),
            ),
        ),
    ),
    "ecg5000-train": BuiltinDataset(
        folder="ecg5000-train",
        source="https://www.timeseriesclassification.com/description.php?Dataset=ECG5000",
        aliases=("ecg5000",),
        files=(
            DatasetFile(
                "ECG5000_TRAIN.txt",
                "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip",
                sha256=("0d96aff193311a6dc6111bf0dbd2f7d2313987fbf7a1da4a383d92563876057b",),
                archive_member="ECG5000_TRAIN.txt",
            ),
        ),
    ),
    "mitbih-100": BuiltinDataset(
        folder="mitbih-100",
        source="https://physionet.org/content/mitdb/1.0.0/",
        aliases=("mitbih",),
        files=(
            DatasetFile(
                "100.hea",
                _PHYSIONET + "100.hea",
                sha256=("95fbdda0454fffae1a2dab1a5ac53e924ae97691c028cdd3ee82f2446b73c066",),
            ),
            DatasetFile(
                "100.dat",
                _PHYSIONET + "100.dat",
                sha256=("b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639",),
            ),
            DatasetFile(
                "100.atr",
                _PHYSIONET + "100.atr",
                sha256=("8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471",),
            ),
        ),
    ),
}


def builtin_dataset(name: str) -> BuiltinDataset:
    """Look a built-in dataset up by folder name or alias (``heart-disease`` -> ``uci-heart-disease``)."""
    for spec in BUILTIN_FILES.values():
        if name == spec.folder or name in spec.aliases:
            return spec
    raise DataError(
        f"{name!r} is not a built-in dataset.",
        f"use one of: {', '.join(BUILTIN_FILES)}.",
    )


def ensure_dataset_files(
    name: str, data_dir: str | Path | None = None, *, download: bool = True
) -> Path:
    """Return ``<data_dir>/<folder>`` with every file of dataset ``name`` present and verified.

    Missing files are downloaded from their official location when ``download`` is true (and
    the machine is online); anything else is an error naming the file, the folder and the URL.
    Returns the dataset folder.
    """
    spec = builtin_dataset(name)
    folder = resolve_data_dir(data_dir) / spec.folder
    for f in spec.files:
        path = folder / f.name
        if not path.is_file():
            if not download:
                raise _unavailable(spec, folder, f, "downloading is switched off")
            _fetch(spec, folder, f)
        verify_file(path, f)
    return folder


def dataset_checksums(name: str, data_dir: str | Path | None = None) -> dict[str, str]:
    """File name -> SHA-256 of every (verified) file of dataset ``name``."""
    spec = builtin_dataset(name)
    folder = ensure_dataset_files(name, data_dir)
    return {f.name: _digest(folder / f.name, "sha256") for f in spec.files}


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


def _fetch(spec: BuiltinDataset, folder: Path, f: DatasetFile) -> None:
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


def _unavailable(spec: BuiltinDataset, folder: Path, f: DatasetFile, why: str) -> DatasetUnavailableError:
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
