"""Mode-specific normalisation (as CTGAN represents columns) with modes fixed by the schema.

CTGAN writes a continuous value as (one-hot of its mixture mode, its offset inside that mode) and
a categorical value as a one-hot. We keep that representation, which lets a generator produce
multi-modal columns with a softmax and a tanh, but place the modes on a fixed grid over the
column's *declared* range (`MODES` equal-width modes; offset in [-1, 1] around the mode's
centre) instead of fitting a Gaussian mixture on a site's rows: the encoder is a pure function
of the public schema, identical at every site and at the server, and costs no privacy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.errors import DataError
from common.synthesis.schema import TableSchema

MODES = 6


@dataclass(frozen=True)
class Span:
    """Where one column lives in the encoded vector: `modes` softmax slots, then (continuous) one tanh slot."""

    start: int
    modes: int
    continuous: bool

    @property
    def width(self) -> int:
        return self.modes + (1 if self.continuous else 0)


class TableEncoder:
    """Encode raw rows (n, columns) to the GAN's vector and decode generator outputs back."""

    def __init__(self, schema: TableSchema, modes: int = MODES) -> None:
        self.schema = schema
        self.modes = modes
        self.spans: list[Span] = []
        start = 0
        for col in schema.columns:
            span = Span(start, modes, True) if col.kind == "continuous" else Span(start, len(col.values), False)
            self.spans.append(span)
            start += span.width
        self.dim = start

    def check(self, x: np.ndarray, where: str) -> None:
        """Refuse rows outside the declared domain (naming the column and the fix), never clip silently."""
        if x.ndim != 2 or x.shape[1] != len(self.schema.columns):
            raise DataError(
                f"{where} has {x.shape[1] if x.ndim == 2 else x.shape} feature columns; the synthesis schema declares "
                f"{len(self.schema.columns)} ({', '.join(self.schema.names)}).",
                "use the schema written for this table (synth-schema), in the table's column order.",
            )
        for j, col in enumerate(self.schema.columns):
            v = x[:, j]
            if col.kind == "continuous":
                bad = (v < col.lo) | (v > col.hi)
                domain = f"[{col.lo:g}, {col.hi:g}]"
            else:
                bad = ~np.isin(v, np.asarray(col.values, dtype=v.dtype))
                domain = "{" + ", ".join(f"{c:g}" for c in col.values) + "}"
            if bad.any():
                raise DataError(
                    f"{where}: {int(bad.sum())} row(s) have column {col.name!r} outside its declared domain {domain} "
                    f"(e.g. {float(v[bad][0]):g}).",
                    "fix or drop those rows, or widen the column's domain in the schema (all sites must agree on it).",
                )

    def encode(self, x: np.ndarray) -> torch.Tensor:
        n = x.shape[0]
        out = np.zeros((n, self.dim), dtype=np.float32)
        for j, (col, span) in enumerate(zip(self.schema.columns, self.spans)):
            v = x[:, j].astype(np.float64)
            if span.continuous:
                width = (col.hi - col.lo) / self.modes
                mode = np.clip(np.floor((v - col.lo) / width), 0, self.modes - 1).astype(int)
                centre = col.lo + (mode + 0.5) * width
                out[np.arange(n), span.start + mode] = 1.0
                out[:, span.start + self.modes] = np.clip((v - centre) / (width / 2), -1, 1)
            else:
                index = np.searchsorted(np.asarray(col.values), v)
                out[np.arange(n), span.start + index] = 1.0
        return torch.from_numpy(out)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Generator logits -> encoded rows: softmax over each column's modes/values, tanh offsets."""
        parts = []
        for span in self.spans:
            parts.append(torch.softmax(raw[:, span.start : span.start + span.modes], dim=1))
            if span.continuous:
                parts.append(torch.tanh(raw[:, span.start + span.modes : span.start + span.width]))
        return torch.cat(parts, dim=1)

    def decode(self, enc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Encoded (activated) rows -> raw values: a mode/category drawn from each softmax."""
        n = enc.shape[0]
        out = np.zeros((n, len(self.schema.columns)), dtype=np.float64)
        for j, (col, span) in enumerate(zip(self.schema.columns, self.spans)):
            p = np.clip(enc[:, span.start : span.start + span.modes].astype(np.float64), 1e-12, None)
            p /= p.sum(axis=1, keepdims=True)
            idx = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, span.modes - 1)
            if span.continuous:
                width = (col.hi - col.lo) / self.modes
                value = col.lo + (idx + 0.5) * width + enc[:, span.start + self.modes] * width / 2
                value = np.clip(value, col.lo, col.hi)
                out[:, j] = np.round(value) if col.integer else np.round(value, col.decimals)
            else:
                out[:, j] = np.asarray(col.values)[idx]
        return out
