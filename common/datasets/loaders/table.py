"""Tables: CSV or Parquet, one row per patient/record, a named label column, numeric features.

An optional ``split`` column with values train/test is honoured (and not used as a feature).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.datasets.formats.table import PARQUET_SUFFIXES
from common.datasets.loaders.base import SPLITS, RawData, file_sha256, reading, require_nonempty_file
from common.errors import DataError


def read_table(path: Path, *, label_column: str = "label") -> RawData:
    require_nonempty_file(path)
    if not path.is_file():
        raise DataError(f"{path} is a folder; the table format expects one CSV or Parquet file.", "pass the file path.")
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with reading(
        path, "Parquet file" if parquet else "CSV file", "export the table again as a complete CSV or Parquet file."
    ):
        df = pd.read_parquet(path) if parquet else pd.read_csv(path, sep=sep, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    # line numbers in messages: CSV header is line 1; for Parquet we say "row" (0-based index + 1)
    row_word, offset = ("row", 1) if parquet else ("line", 2)
    if label_column not in df.columns:
        raise DataError(
            f"The table {path} has no label column {label_column!r}; "
            f"its columns are: {', '.join(df.columns) or 'none'}.",
            "name the label column 'label', or pass its name with label_column / --label-column.",
        )
    if df.empty:
        raise DataError(f"The table {path} has a header but no rows.", "export the rows too.")
    split = split_column(df, path, label_column, row_word, offset)
    if split is not None:
        df.pop("split")
    labels = df.pop(label_column)
    if df.shape[1] == 0:
        raise DataError(
            f"The table {path} has no feature columns besides {label_column!r}.", "export the feature columns too."
        )
    non_numeric = [
        c for c in df.columns if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if non_numeric:
        examples = ", ".join(
            f"{c} (e.g. {df[c].dropna().astype(str).iloc[0]!r})" if df[c].notna().any() else c for c in non_numeric[:10]
        )
        raise DataError(
            f"The table {path} has non-numeric feature column(s): {examples}"
            + (f" and {len(non_numeric) - 10} more" if len(non_numeric) > 10 else "")
            + ".",
            "encode them as numbers (e.g. one-hot or ordinal codes) or drop them before export; "
            "missing-value markers such as '?' also make a column non-numeric.",
        )
    x = df.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"The table {path} has a missing or infinite value in column {df.columns[c]!r} on {row_word} {r + offset} "
            f"({int(bad.any(axis=1).sum())} row(s) affected).",
            "fill or drop missing values before export; medfed does not impute silently.",
        )
    if labels.isna().any():
        i = int(np.argmax(labels.isna().to_numpy()))
        raise DataError(
            f"The table {path} has an empty label on {row_word} {i + offset}.", "fill in the label or drop the row."
        )
    values, kind = label_values(labels)
    return RawData(
        x=x.astype(np.float32),
        labels=values,
        modality="tabular",
        source=path,
        label_kind=kind,
        split=split,
        locate=lambda i: f"{row_word} {i + offset} of {path}",
        checksums={path.name: file_sha256(path)},
    )


def split_column(df: pd.DataFrame, path: Path, label_column: str, row_word: str, offset: int) -> np.ndarray | None:
    """The table's optional `split` column (train/test per row), checked; None when it has none.

    Shared by every table format (numeric tables, text tables): one spelling of the rule and of
    its error."""
    if "split" not in df.columns or label_column == "split":
        return None
    s = df["split"].astype(str).str.strip().str.lower()
    bad = ~s.isin(SPLITS)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(
            f"The table {path} has split {s.iloc[i]!r} on {row_word} {i + offset}.",
            "use train or test in the split column (or drop it for an automatic stratified split).",
        )
    return s.to_numpy()


def label_values(labels: pd.Series, *, digits_are_indices: bool = False) -> tuple[np.ndarray, str]:
    """(label values, RawData label kind) of a table's label column: integers are class indices,
    anything else a categorical name (stripped text). With ``digits_are_indices`` a text column
    whose every value is a whole number (a text table read as strings) counts as indices too."""
    integer = pd.api.types.is_integer_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if not integer and digits_are_indices:
        as_int = pd.to_numeric(labels.astype(str).str.strip(), errors="coerce")
        if as_int.notna().all() and (as_int == as_int.round()).all():
            labels, integer = as_int.astype(np.int64), True
    if integer:
        return labels.to_numpy(), "index"
    return labels.astype(str).str.strip().to_numpy(), "categorical"
