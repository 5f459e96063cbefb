"""One contract for every dataset (FLamby style).

Whatever the source (a built-in dataset, a partition of one, or a hospital's own files), a
federation sees a `FederatedDataset`: named sites, each with a train, a validation and a test
`Split` of float32 inputs and int64 labels, plus the metadata a model needs (modality, input
shape, number of classes). Normalisation statistics come from each site's own training split.

The validation split is carved from the site's training rows (`with_validation`, stratified,
fixed by the seed) and never trained on: the decision threshold and the temperature of the
global model are chosen on validation data only, never on test data (docs/EVALUATION.md).
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
        """Rows per class 0..num_classes-1. Labels outside that range are left out rather than
        raising or lengthening the list: `medfed data check` summarises broken datasets too and
        reports such labels as problems of their own (common/datasets/check.py)."""
        y = self.y.long()
        y = y[(y >= 0) & (y < num_classes)]
        return torch.bincount(y, minlength=max(num_classes, 0)).tolist()


@dataclass
class SiteData:
    """One hospital's data: train, validation and test splits, never shared with anyone.

    `val` is None until `with_validation` carves it (loaders build train/test only).
    """

    name: str
    train: Split
    test: Split
    val: Split | None = None


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
    # The operator's validation split (an official one: PneumoniaMNIST's val, ECG5000's seeded
    # val). When present, the server chooses the operating point and the temperature on it;
    # otherwise the sites' validation splits are used (federated path).
    central_val: Split | None = None

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
        k = self.num_classes
        return {
            "dataset": self.name,
            "modality": self.modality,
            "input_shape": list(self.input_shape),
            "num_classes": k,
            "class_names": self.class_names,
            "sites": {
                name: {
                    "train": len(s.train),
                    "val": len(s.val) if s.val is not None else 0,
                    "test": len(s.test),
                    "class_counts": {
                        "train": s.train.class_counts(k),
                        "val": s.val.class_counts(k) if s.val is not None else [0] * k,
                        "test": s.test.class_counts(k),
                    },
                }
                for name, s in self.sites.items()
            },
        }


def with_validation(site: SiteData, fraction: float, seed: int) -> SiteData:
    """`site` with `fraction` of its training rows moved, stratified, into its validation split.

    Deterministic in (seed, site name), so the server and a site carve the same rows in every
    process. A site that already has a validation split is returned unchanged.
    """
    from common.datasets.partition import stratified_split

    if site.val is not None:
        return site
    y = site.train.y.numpy()
    train_idx, val_idx = stratified_split(y, (1 - fraction, fraction), seed=_validation_seed(seed, site.name))
    return SiteData(site.name, _take(site.train, train_idx), site.test, _take(site.train, val_idx))


def _validation_seed(seed: int, name: str) -> int:
    key = [seed, 0x5A1, *name.encode("utf-8")]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _take(split: Split, idx: np.ndarray) -> Split:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return Split(split.x[index], split.y[index])


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

    return SiteData(site.name, apply(site.train), apply(site.test), apply(site.val) if site.val is not None else None)
