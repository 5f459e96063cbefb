"""The public schema of a synthetic table: each column's kind and its declared domain.

Why a declared schema: CTGAN fits a Gaussian mixture per continuous column and reads the
categories off the data; both are releases of the data (a mixture mean can sit on one
patient's value, a rare category names a patient). Here the consortium declares each column's
domain in advance (clinical ranges, code lists), the same at every site, so the encoding costs
no privacy at all. A site whose rows fall outside the declared domain refuses with the row and
column, rather than silently clipping them.

JSON form (`synth-schema = "path/to/schema.json"`, or the same JSON text inline, which is how it
reaches deployed sites: the run config is public, a server path is not on a hospital's disk):
    {"label": "label", "classes": ["no disease", "disease"],
     "columns": [{"name": "age", "kind": "continuous", "min": 0, "max": 100, "integer": true},
                 {"name": "sex", "kind": "categorical", "values": [0, 1]}]}
"label" is the table's label column; absent, it is the run's `label-column` (default "label").
The synthetic table keeps that name, so it is read back with the same `--label-column`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError

KINDS = ("continuous", "categorical")


@dataclass(frozen=True)
class Column:
    """One feature column: continuous in [lo, hi] (rounded if `integer`), or categorical over `values`."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    integer: bool = False
    values: tuple[float, ...] = ()
    decimals: int = 3

    def problems(self) -> list[str]:
        if self.kind not in KINDS:
            return [f"column {self.name!r} has kind {self.kind!r}; supported kinds are {', '.join(KINDS)} "
                    "(encode text or dates as codes first)."]
        if self.kind == "continuous":
            if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.hi <= self.lo:
                return [f"column {self.name!r} declares min={self.lo}, max={self.hi}; a continuous column needs "
                        "finite min < max (a one-valued column carries no information: drop it)."]
            return []
        if len(set(self.values)) < 2:
            return [f"column {self.name!r} declares {len(set(self.values))} value(s); a categorical column needs "
                    "at least 2 distinct values (a one-valued column carries no information: drop it)."]
        return []


@dataclass(frozen=True)
class TableSchema:
    """Feature columns in table order, the label column's name and the class names."""

    columns: tuple[Column, ...]
    label: str = "label"
    classes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def validate(self, num_features: int | None = None, num_classes: int | None = None) -> "TableSchema":
        problems = [p for c in self.columns for p in c.problems()]
        if not self.columns:
            problems.append("the schema declares no feature columns.")
        if len(set(self.names)) != len(self.names):
            problems.append("the schema names a column twice.")
        if self.label in self.names:
            problems.append(f"the label column {self.label!r} is also declared as a feature column.")
        if num_features is not None and num_features != len(self.columns):
            problems.append(f"the schema declares {len(self.columns)} feature columns but the data has {num_features}.")
        if num_classes is not None and self.classes and len(self.classes) != num_classes:
            problems.append(f"the schema declares {len(self.classes)} classes but the data has {num_classes}.")
        if problems:
            raise ConfigError(
                "The synthetic-data schema is unusable:\n  - " + "\n  - ".join(problems),
                "fix the schema file (synth-schema; see common/synthesis/schema.py for its form).",
            )
        return self

    @classmethod
    def from_json(cls, path: str | Path) -> "TableSchema":
        """Read a schema file, or the schema's JSON text itself (a value starting with "{")."""
        inline = isinstance(path, str) and path.lstrip().startswith("{")
        p = "the inline synth-schema" if inline else Path(path)
        try:
            raw: Any = json.loads(path if inline else Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"The synthetic-data schema {p} does not exist.", "pass an existing JSON file as synth-schema.") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"The synthetic-data schema {p} is not valid JSON ({err.msg}, line {err.lineno}).",
                              "fix the JSON.") from None
        try:
            columns = tuple(
                Column(
                    name=str(c["name"]),
                    kind=str(c.get("kind", "")),
                    lo=float(c.get("min", 0.0)),
                    hi=float(c.get("max", 0.0)),
                    integer=bool(c.get("integer", False)),
                    values=tuple(float(v) for v in c.get("values", ())),
                    decimals=int(c.get("decimals", 3)),
                )
                for c in raw["columns"]
            )
            return cls(columns, str(raw.get("label", "")), tuple(str(c) for c in raw.get("classes", ())))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"The synthetic-data schema {p} is malformed ({err!r}).",
                              'each column needs "name" and "kind" (continuous: "min", "max"; categorical: "values").') from None


def _cont(name: str, lo: float, hi: float, integer: bool = True, decimals: int = 0) -> Column:
    return Column(name, "continuous", lo, hi, integer=integer, decimals=decimals)


def _cat(name: str, *values: float) -> Column:
    return Column(name, "categorical", values=tuple(float(v) for v in values))


# UCI heart disease (heart-disease.names): code lists as documented there; continuous ranges are
# public clinical bounds chosen without looking at any hospital's rows (0 is the files' own code
# for a missing blood pressure / cholesterol, hence a lower bound of 0).
HEART_DISEASE = TableSchema(
    columns=(
        _cont("age", 0, 100),
        _cat("sex", 0, 1),
        _cat("cp", 1, 2, 3, 4),
        _cont("trestbps", 0, 250),
        _cont("chol", 0, 650),
        _cat("fbs", 0, 1),
        _cat("restecg", 0, 1, 2),
        _cont("thalach", 50, 250),
        _cat("exang", 0, 1),
        _cont("oldpeak", -3, 7, integer=False, decimals=1),
    ),
    label="label",
    classes=("no disease", "disease"),
)

#: Built-in datasets that have a declared public schema.
BUILTIN_SCHEMAS: dict[str, TableSchema] = {"heart-disease": HEART_DISEASE}


def schema_for(dataset: str, schema_path: str, label_column: str = "label") -> TableSchema:
    """The run's schema: the `synth-schema` file (or inline JSON) if set, else the built-in
    dataset's own. A schema that names no label column takes the run's `label-column`; one that
    names another is refused (the table is read with `label-column`, the synthetic table is
    written with the schema's label: they must be the same column)."""
    if schema_path:
        schema = TableSchema.from_json(schema_path)
        if not schema.label:
            schema = dataclasses.replace(schema, label=label_column)
        elif schema.label != label_column:
            raise ConfigError(
                f"The synthetic-data schema names the label column {schema.label!r}, but the run reads the "
                f"table's labels from label-column={label_column!r}.",
                f"pass --label-column {schema.label} (label-column in a run config), or drop \"label\" from the "
                "schema so it takes the run's label column.",
            )
        return schema.validate()
    if dataset in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[dataset]
    raise ConfigError(
        f"No public schema for synthesising {dataset or 'a hospital table'!r}: the encoding of each column must be "
        "declared in advance (fitting it on a site's rows would release them).",
        "write a schema JSON (see common/synthesis/schema.py) and pass it as synth-schema / --schema, "
        f"or synthesise a built-in dataset with a schema ({', '.join(BUILTIN_SCHEMAS)}).",
    )
