"""Contract checks for any `FederatedDataset` (built-in, partitioned or a hospital's own).

Returns *all* problems at once (Opacus-validator style) so an operator fixes them in one go;
`summarise` adds them to the JSON summary that `medfed data check` prints.

A training split with a single class is a *problem* when it is the only training data there is
(a one-site dataset, e.g. a hospital checking its own export, or a federation whose pooled
training data has one class): nothing could learn the task. Inside a multi-site federation it
is only a *warning*: such a site still contributes useful updates (Fed-Heart-Disease's
Switzerland trains on positives only), but its local metrics are undefined.
"""

from __future__ import annotations

import torch

from common.datasets.contract import MODALITIES, FederatedDataset, Split


def check_dataset(ds: FederatedDataset) -> list[str]:
    """Every problem found, as full sentences; an empty list means the dataset is usable."""
    problems: list[str] = []
    if ds.modality not in MODALITIES:
        problems.append(f"{ds.name}: modality {ds.modality!r} is not one of {', '.join(MODALITIES)}.")
    if ds.num_classes < 2:
        problems.append(f"{ds.name}: num_classes={ds.num_classes}; a classifier needs at least 2.")
    if len(ds.class_names) != ds.num_classes:
        problems.append(f"{ds.name}: {len(ds.class_names)} class names for {ds.num_classes} classes.")
    if not ds.sites:
        problems.append(f"{ds.name}: no sites.")
    for name in ds.sites:
        problems += site_problems(ds, name)
    if ds.central_test is not None:
        problems += [f"{ds.name} central test: {p}" for p in _split_problems(ds, ds.central_test)]
    if len(ds.sites) > 1:
        pooled = torch.cat([s.train.y for s in ds.sites.values()]) if ds.sites else torch.zeros(0)
        if len(pooled) and len(torch.unique(pooled)) < 2:
            problems.append(
                f"{ds.name}: all sites together train on only class {_name(ds, int(pooled[0]))!r}; "
                "a classifier needs at least two classes."
            )
    return problems


def site_problems(ds: FederatedDataset, name: str) -> list[str]:
    """Problems of one site (prefixed ``site NAME SPLIT:``)."""
    site = ds.sites[name]
    out = [
        f"site {name} {split}: {p}" for split in ("train", "test") for p in _split_problems(ds, getattr(site, split))
    ]
    if len(ds.sites) == 1:
        out += _single_class(ds, name)
    return out


def dataset_warnings(ds: FederatedDataset) -> list[str]:
    """Things worth knowing that do not block a federation (see the module docstring)."""
    if len(ds.sites) < 2:
        return []
    return [w for name in ds.sites for w in _single_class(ds, name, fatal=False)]


def _single_class(ds: FederatedDataset, name: str, *, fatal: bool = True) -> list[str]:
    y = ds.sites[name].train.y
    if not len(y) or len(torch.unique(y)) >= 2:
        return []
    why = (
        "training needs at least two classes."
        if fatal
        else "the site can still take part, but its local metrics (e.g. AUC) are undefined "
        "and its updates favour that class."
    )
    return [f"site {name} train: only class {_name(ds, int(y[0]))!r} present; {why}"]


def _name(ds: FederatedDataset, label: int) -> str:
    return ds.class_names[label] if 0 <= label < len(ds.class_names) else str(label)


def _split_problems(ds: FederatedDataset, split: Split) -> list[str]:
    out: list[str] = []
    x, y = split.x, split.y
    if len(y) == 0:
        return ["split is empty."]
    if x.shape[0] != y.shape[0]:
        out.append(f"{x.shape[0]} inputs but {y.shape[0]} labels.")
    if tuple(x.shape[1:]) != tuple(ds.input_shape):
        out.append(f"input shape {tuple(x.shape[1:])} differs from the dataset's {tuple(ds.input_shape)}.")
    if x.dtype != torch.float32:
        out.append(f"inputs are {x.dtype}, expected torch.float32.")
    if y.dtype != torch.int64 or y.dim() != 1:
        out.append(f"labels are {y.dtype} with shape {tuple(y.shape)}, expected int64 of shape (n,).")
    if x.is_floating_point():
        bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(dim=1).sum())
        if bad:
            out.append(f"{bad} example(s) hold NaN or infinite values.")
    if y.numel() and not y.is_floating_point():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= ds.num_classes:
            out.append(f"labels span {lo}..{hi}, outside 0..{ds.num_classes - 1}.")
    return out


def summarise(ds: FederatedDataset) -> dict:
    """`ds.summary()` plus ``problems`` (per site and overall), ``warnings`` and ``valid``."""
    summary = ds.summary()  # out-of-range labels are not counted there; check_dataset names them
    problems = check_dataset(ds)
    warnings = dataset_warnings(ds)
    for name, entry in summary["sites"].items():
        entry["problems"] = site_problems(ds, name)
        entry["warnings"] = [w for w in warnings if w.startswith(f"site {name} ")]
    if ds.central_test is not None:
        summary["central_test"] = {
            "test": len(ds.central_test),
            "class_counts": ds.central_test.class_counts(ds.num_classes),
        }
    if ds.central_val is not None:  # the operator's validation split: the operating point's data
        summary["central_val"] = {"val": len(ds.central_val), "class_counts": ds.central_val.class_counts(ds.num_classes)}
    if ds.modality == "text":
        summary["text"] = text_summary(ds)
    summary["problems"] = problems
    summary["warnings"] = warnings
    summary["valid"] = not problems
    return summary


def text_summary(ds: FederatedDataset) -> dict:
    """Documents, their length in tokens (after truncation) and how many reach ``max_tokens``.

    The tokens kept are counted from the ids (id 0 is padding), so a document at the limit was
    truncated or is exactly that long: ``at_max_tokens`` bounds the truncation from above.
    """
    splits = [s for site in ds.sites.values() for s in (site.train, site.val, site.test) if s is not None]
    lengths = torch.cat([(s.x != 0).sum(dim=1) for s in splits]) if splits else torch.zeros(0)
    max_tokens = int(ds.input_shape[0]) if ds.input_shape else 0
    if not len(lengths):
        return {"documents": 0, "max_tokens": max_tokens}
    quantiles = torch.quantile(lengths.double(), torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=torch.float64))
    at_max = int((lengths >= max_tokens).sum())
    return {
        "documents": int(len(lengths)),
        "max_tokens": max_tokens,
        "tokens": {name: int(q) for name, q in zip(("min", "median", "p90", "max"), quantiles.tolist())},
        "at_max_tokens": at_max,
        "at_max_tokens_fraction": at_max / len(lengths),
    }
