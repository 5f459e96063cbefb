"""Text tables: a hospital's notes as CSV or Parquet, one row per note, a text and a label column.

The text is tokenised here with the data-independent hashing tokeniser
(common/datasets/tokenise.py), so what leaves this reader is token ids and labels, never a
vocabulary. Refused, naming the file, the row and the fix: a file that is not UTF-8 (the
line of the first bad byte), a missing text or label column, an empty text cell, a cell that
holds no words (a number, a code) or is not text at all (Parquet), an empty label. An
optional ``split`` column (train/test) is honoured as in the numeric tables.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from common.datasets.formats.table import PARQUET_SUFFIXES
from common.datasets.loaders.base import RawData, file_sha256, reading, require_nonempty_file
from common.datasets.loaders.table import label_values, split_column
from common.datasets.tokenise import DEFAULT_HASH_BUCKETS, DEFAULT_MAX_TOKENS, Tokeniser
from common.errors import DataError

_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def read_text_table(
    path: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    hash_buckets: int = DEFAULT_HASH_BUCKETS,
) -> RawData:
    """Read and tokenise a note table; x is (n, max_tokens) float32 token ids."""
    tokeniser = Tokeniser(max_tokens, hash_buckets)
    require_nonempty_file(path)
    if not path.is_file():
        raise DataError(
            f"{path} is a folder; the text-table format expects one CSV or Parquet file.", "pass the file path."
        )
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    df = _read_parquet(path) if parquet else _read_csv(path, text_column)
    df.columns = [str(c).strip() for c in df.columns]
    row_word, offset = ("row", 1) if parquet else ("line", 2)  # CSV: the header is line 1
    for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in df.columns:
            raise DataError(
                f"The table {path} has no column {column!r}; its columns are: {', '.join(df.columns) or 'none'}.",
                f"pass the name of the column with {option} ({option.lstrip('-')} in the run config).",
            )
    if df.empty:
        raise DataError(f"The table {path} has a header but no rows.", "export the notes too.")
    texts = _texts(df[text_column], path, text_column, row_word, offset)
    labels = df[label_column]
    if labels.isna().any() or (labels.astype(str).str.strip() == "").any():
        i = int(np.argmax((labels.isna() | (labels.astype(str).str.strip() == "")).to_numpy()))
        raise DataError(
            f"The table {path} has an empty label on {row_word} {i + offset}.", "fill in the label or drop the row."
        )
    split = split_column(df, path, label_column, row_word, offset)
    x, _lengths = tokeniser.encode(texts)
    # CSV labels are read as text here: "3" is still the class index 3
    values, kind = label_values(labels, digits_are_indices=True)
    return RawData(
        x=x,
        labels=values,
        modality="text",
        source=path,
        label_kind=kind,
        split=split,
        locate=lambda i: f"{row_word} {i + offset} of {path}",
        checksums={path.name: file_sha256(path)},
    )


def _read_csv(path: Path, text_column: str) -> pd.DataFrame:
    """The CSV decoded strictly as UTF-8 (a BOM is allowed); any other encoding is refused
    rather than guessed, because a wrong guess silently changes the words and their ids."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"The table {path} is not UTF-8 text: byte 0x{data[err.start]:02x} on line {line} cannot be decoded.",
            "export the table again as UTF-8 (e.g. from Excel: 'CSV UTF-8'; or iconv -f latin1 -t utf-8).",
        ) from None
    with reading(path, "CSV file", "export the table again as a complete CSV file (quote texts holding commas)."):
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)


def _read_parquet(path: Path) -> pd.DataFrame:
    with reading(path, "Parquet file", "export the table again as a complete Parquet file."):
        return pd.read_parquet(path)


def _texts(column: pd.Series, path: Path, name: str, row_word: str, offset: int) -> list[str]:
    """Every cell of the text column, checked: a non-empty string holding at least one word."""
    out: list[str] = []
    for i, cell in enumerate(column.tolist()):
        where = f"{row_word} {i + offset}"
        if cell is None or (isinstance(cell, float) and np.isnan(cell)) or (isinstance(cell, str) and not cell.strip()):
            raise DataError(
                f"The table {path} has an empty text in column {name!r} on {where}.",
                "fill in the note or drop the row; medfed does not train on empty notes.",
            )
        if not isinstance(cell, str):
            raise DataError(
                f"The table {path} holds a {type(cell).__name__} ({cell!r}), not text, in column {name!r} on {where}.",
                f"store the notes as strings in {name!r}, or name the note column with --text-column.",
            )
        if not _LETTER.search(cell):
            shown = cell if len(cell) <= 40 else cell[:37] + "..."
            raise DataError(
                f"The table {path} has no words in column {name!r} on {where} ({shown!r}).",
                f"check that {name!r} is the note column (--text-column), or drop rows without a note.",
            )
        out.append(cell)
    return out
