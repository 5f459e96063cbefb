"""One contract for every dataset (FLamby style).

Whatever the source (a built-in dataset, a partition of one, or a hospital's own files), a
federation sees a `FederatedDataset`: named sites, each with a train and a test `Split` of
float32 inputs and int64 labels, plus the metadata a model needs (modality, input shape,
number of classes). Normalisation statistics come from each site's own training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from common.errors import DataError

MODALITIES = ("image", "signal", "tabular", "text")
# Text inputs are token ids (common/datasets/tokenise.py) held as float32: never normalised.
UNNORMALISED_MODALITIES = ("text",)


@dataclass
class Split:
    """Inputs `x` (float32, shape (n, *input_shape)) and labels `y` (int64, shape (n,))."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> "Split":
        """A split from numpy arrays or tensors, converted to the contract's float32 / int64."""
        xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        yt = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(y))
        return cls(xt.float(), yt.long())

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.y.numpy(), minlength=num_classes).astype(int).tolist()


@dataclass
class SiteData:
    """One hospital's data: a train and a test split, never shared with anyone."""

    name: str
    train: Split
    test: Split


@dataclass
class FederatedDataset:
    """A dataset as a federation sees it."""

    name: str
    modality: str  # one of MODALITIES
    input_shape: tuple[int, ...]  # per example, e.g. (1, 28, 28), (1, 140), (10,)
    num_classes: int
    class_names: list[str]
    sites: dict[str, SiteData]
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    # An optional held-out split the operator owns (e.g. the official test split): used for
    # centralised evaluation of the global model on the server.
    central_test: Split | None = None

    def site_names(self) -> list[str]:
        return list(self.sites)

    def site(self, name_or_index: str | int) -> SiteData:
        if isinstance(name_or_index, int):
            names = self.site_names()
            if not 0 <= name_or_index < len(names):
                raise DataError(
                    f"Site index {name_or_index} is out of range; {self.name} has {len(names)} sites.",
                    f"use an index in 0..{len(names) - 1}.",
                )
            return self.sites[names[name_or_index]]
        if name_or_index not in self.sites:
            raise DataError(
                f"Site {name_or_index!r} is not part of {self.name}.",
                f"use one of: {', '.join(self.sites)}.",
            )
        return self.sites[name_or_index]

    def summary(self) -> dict:
        """A JSON-ready summary: per site and split, counts and class counts."""
        return {
            "dataset": self.name,
            "modality": self.modality,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "sites": {
                name: {
                    "train": len(s.train),
                    "test": len(s.test),
                    "class_counts": {
                        "train": s.train.class_counts(self.num_classes),
                        "test": s.test.class_counts(self.num_classes),
                    },
                }
                for name, s in self.sites.items()
            },
        }


def normalise_with_site_stats(site: SiteData, modality: str) -> SiteData:
    """Standardise a site's inputs with statistics of *its own* training split only.

    Images: one mean/std over all pixels of each channel; signals: one mean/std per channel;
    tables: per-feature mean/std. A zero std becomes 1 (constant features stay constant).
    Text is returned as it is: its inputs are token ids, not measurements.
    """
    if modality in UNNORMALISED_MODALITIES:
        return site
    x = site.train.x
    if modality == "tabular":
        dims: tuple[int, ...] = (0,)
    else:  # (n, C, ...) -> statistics per channel
        dims = tuple(d for d in range(x.dim()) if d != 1)
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))

    def apply(split: Split) -> Split:
        return Split(((split.x - mean) / std).float(), split.y)

    return SiteData(site.name, apply(site.train), apply(site.test))
