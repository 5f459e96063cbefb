"""Signals: WFDB records with beat annotations, and UCR-style time-series tables.

Both produce float32 (n, leads, length).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.datasets.loaders.base import RawData, file_sha256, reading, require_nonempty_file
from common.errors import ConfigError, DataError

# AAMI EC57 beat classes; every other annotation symbol (rhythm changes '+', noise '~', ...)
# is not a beat and is skipped.
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
AAMI_MAP: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
DEFAULT_WINDOW_S = (0.25, 0.45)  # before / after the R peak: 90 + 162 samples at 360 Hz


# ----------------------------------------------------------------------------- WFDB
def read_wfdb(
    path: Path,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW_S,
    leads: Sequence[int | str] | None = None,
    annotation: str = "atr",
) -> RawData:
    """Cut one window per annotated beat from every record at ``path`` (a folder or a record).

    Beats whose window runs past either end of the signal are dropped (there is no signal to
    fill them with). Windows are in seconds, converted with each record's own sampling rate;
    all records must share one rate so every window has the same length.
    """
    import wfdb  # imported here: only ECG sites pay for it

    try:
        before_s, after_s = (float(v) for v in window)
    except (TypeError, ValueError):
        before_s = after_s = float("nan")
    if not (before_s >= 0 and after_s > 0):
        raise ConfigError(
            f"window={window!r} is invalid.", "use (seconds before, seconds after) the R peak, e.g. (0.25, 0.45)."
        )
    records = _record_paths(path)
    xs, ys, where, checksums = [], [], [], {}
    fs_seen: float | None = None
    for rec in records:
        header = rec.with_suffix(".hea")
        ann_file = rec.with_suffix("." + annotation)
        if not ann_file.is_file():
            raise DataError(
                f"The WFDB record {rec} has no beat annotation file {ann_file}.",
                f"put the .{annotation} file next to {header.name} (or pass the annotation extension).",
            )
        with reading(
            header, "WFDB record", "copy the record's .hea and signal (.dat) files again; they are incomplete."
        ):
            record = wfdb.rdrecord(str(rec))
        with reading(ann_file, "WFDB annotation file", f"copy {ann_file.name} again; it is incomplete."):
            ann = wfdb.rdann(str(rec), annotation)
        signal = record.p_signal
        if signal is None or signal.ndim != 2 or signal.shape[0] == 0:
            raise DataError(f"The WFDB record {rec} holds no signal samples.", "check the record's .dat file.")
        fs = float(record.fs)
        if fs_seen is not None and fs != fs_seen:
            raise DataError(
                f"The WFDB record {rec} is sampled at {fs} Hz but earlier records at {fs_seen} Hz.",
                "resample all records to one rate (e.g. with wfdb.processing.resample_sig) or load them separately.",
            )
        fs_seen = fs
        cols = _lead_indices(leads, list(record.sig_name or []), signal.shape[1], rec)
        pre, post = int(round(before_s * fs)), int(round(after_s * fs))
        for sample, symbol in zip(ann.sample, ann.symbol, strict=True):
            cls = AAMI_MAP.get(symbol)
            if cls is None:
                continue
            start, stop = int(sample) - pre, int(sample) + post
            if start < 0 or stop > signal.shape[0]:
                continue
            seg = signal[start:stop, cols].T
            if not np.isfinite(seg).all():
                raise DataError(
                    f"The WFDB record {rec} has missing (NaN) samples around sample {int(sample)} "
                    f"(beat {symbol!r}); invalid samples are stored as the format's 'no data' value.",
                    "repair or trim the record so annotated beats have valid samples, or drop those annotations.",
                )
            xs.append(seg)
            ys.append(AAMI_CLASSES.index(cls))
            where.append(f"beat at sample {int(sample)} of record {rec}")
        for f in (header, rec.with_suffix(".dat"), ann_file):
            if f.is_file():
                checksums[f.name] = file_sha256(f)
    if not xs:
        raise DataError(
            f"No usable annotated beats in {path}: no annotation matched the AAMI beat symbols "
            f"({''.join(AAMI_MAP)}) with a full window inside the signal.",
            "check the annotation file (use the reference beat annotations, .atr) and the window length.",
        )
    return RawData(
        x=np.stack(xs).astype(np.float32),
        labels=np.asarray(ys, dtype=np.int64),
        modality="signal",
        source=path,
        label_kind="fixed",
        class_names=list(AAMI_CLASSES),
        locate=lambda i: where[i],
        checksums=checksums,
    )


def _record_paths(path: Path) -> list[Path]:
    """A folder -> every record (``*.hea``) in it; a record path with or without suffix -> itself."""
    if path.is_dir():
        recs = sorted(p.with_suffix("") for p in path.glob("*.hea"))
        if not recs:
            raise DataError(
                f"The folder {path} holds no WFDB header (.hea) files.", "point at a folder of WFDB records."
            )
        return recs
    rec = path.with_suffix("") if path.suffix in (".hea", ".dat", ".atr") else path
    if not rec.with_suffix(".hea").is_file():
        raise DataError(
            f"The WFDB record {rec} does not exist (no {rec.with_suffix('.hea')}).",
            "pass a folder of records or a record path such as data/100 or data/100.hea.",
        )
    return [rec]


def _lead_indices(leads: Sequence[int | str] | None, names: list[str], n: int, rec: Path) -> list[int]:
    if not leads:
        return [0]
    out = []
    for lead in leads:
        if isinstance(lead, str) and not lead.isdigit():
            if lead not in names:
                raise DataError(
                    f"The WFDB record {rec} has no lead {lead!r}; it has {', '.join(names)}.", "choose leads it has."
                )
            out.append(names.index(lead))
        else:
            i = int(lead)
            if not 0 <= i < n:
                raise DataError(
                    f"The WFDB record {rec} has {n} leads; lead index {i} does not exist.", f"use 0..{n - 1}."
                )
            out.append(i)
    return out


# ----------------------------------------------------------------------------- UCR
def read_ucr(path: Path) -> RawData:
    """One series per row, class label in the first column; whitespace, comma or tab separated."""
    require_nonempty_file(path)
    if not path.is_file():
        raise DataError(f"{path} is a folder; the ucr format expects one text file.", "pass the file path.")
    sep = _sniff_separator(path)
    with reading(path, "time-series file", "save one series per line, label first, all values numeric."):
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, skip_blank_lines=True)
    if df.empty:
        raise DataError(f"The file {path} holds no rows.", "save one series per line, label first.")
    if df.shape[1] < 2:
        raise DataError(
            f"The file {path} has only one column; expected the label followed by the series values.",
            "save each line as: label, value1, value2, ... (separated by spaces, commas or tabs).",
        )
    values = _numeric(df.iloc[:, 1:], path, first_col=2)
    if df.iloc[:, 0].isna().any():
        line = int(np.argmax(df.iloc[:, 0].isna().to_numpy())) + 1
        raise DataError(f"The file {path} has no label on line {line}.", "put the class label in the first column.")
    labels = df.iloc[:, 0].str.strip().to_numpy()
    as_num = pd.to_numeric(pd.Series(labels), errors="coerce")
    if as_num.notna().all() and np.isfinite(as_num.to_numpy()).all():
        labels = as_num.to_numpy()  # numeric labels sort numerically (2 < 10)
    return RawData(
        x=values[:, None, :],
        labels=labels,
        modality="signal",
        source=path,
        label_kind="categorical",
        locate=lambda i: f"line {i + 1} of {path}",
        checksums={path.name: file_sha256(path)},
    )


def _sniff_separator(path: Path) -> str:
    """Tab if the first data line has a tab, else comma if it has one, else any whitespace."""
    with reading(path, "time-series file"):
        with open(path, encoding="utf-8", errors="strict") as fh:
            for line in fh:
                if line.strip():
                    break
            else:
                raise DataError(f"The file {path} holds only blank lines.", "save one series per line, label first.")
    if "\t" in line.strip():
        return "\t"
    if "," in line:
        return ","
    return r"\s+"


def _numeric(block: pd.DataFrame, path: Path, first_col: int) -> np.ndarray:
    """String cells -> float32 array; the first non-numeric, missing or infinite cell is named."""
    num = block.apply(lambda c: pd.to_numeric(c.str.strip() if c.dtype == object else c, errors="coerce"))
    arr = num.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raw = block.iat[r, c]
        what = (
            "missing"
            if raw is None or (isinstance(raw, float) and np.isnan(raw)) or not str(raw).strip()
            else repr(raw)
        )
        raise DataError(
            f"The file {path} has a non-numeric, missing or infinite value ({what}) "
            f"on line {r + 1}, column {c + first_col}"
            f" ({int(bad.any(axis=1).sum())} line(s) affected).",
            "every value after the label must be a finite number and every line equally long; "
            "remove header lines, pad or trim series to one length, and fill or drop missing values.",
        )
    return arr.astype(np.float32)


def ucr_label_name(value: object) -> str:
    """1.0 -> '1', 2.5 -> '2.5', 'abnormal' -> 'abnormal'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return re.sub(r"\s+", " ", str(value))
