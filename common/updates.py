"""Model updates on the wire: encoding, decoding and validation.

Sites send *updates* (local weights minus the global weights they received), not raw weights.
Why: SecAgg+ quantises every value into ``[-clipping_range, clipping_range]`` and silently
clips anything outside. Updates are small and, once bounded, fit that range exactly, so the
securely aggregated sum is exact up to quantisation error — raw weights are not bounded by
anything the protocol knows about.

The bound is an L-infinity bound per update (`bound`): a site whose update exceeds it scales the
whole update down (direction kept) and *reports* that it did (`update_scaled` metric); nothing
is silently clipped per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ModelMismatchError

# Keys the server adds to every fit instruction's config (the wire names both sides share).
UPDATE_BOUND_KEY = "medfed-update-bound"  # L-infinity bound of the update a site may send
SERVER_ROUND_KEY = "medfed-server-round"  # the round being trained, for the sites' logs and ledgers

NDArrays = list[np.ndarray]


@dataclass(frozen=True)
class EncodedUpdate:
    delta: NDArrays
    scaled: bool  # True when the update was scaled down to respect the bound
    inf_norm: float  # L-infinity norm before scaling


def encode_update(local: NDArrays, global_: NDArrays, bound: float) -> EncodedUpdate:
    """`local - global`, scaled down uniformly if any coordinate exceeds `bound`."""
    if len(local) != len(global_):
        raise ModelMismatchError(
            f"Local model has {len(local)} tensors but the global model has {len(global_)}.",
            "the site and the server must use the same model configuration.",
        )
    delta = [np.asarray(l, dtype=np.float64) - np.asarray(g, dtype=np.float64) for l, g in zip(local, global_)]
    inf_norm = max((float(np.max(np.abs(d))) for d in delta if d.size), default=0.0)
    scaled = inf_norm > bound
    if scaled:
        factor = bound / inf_norm
        delta = [d * factor for d in delta]
    out = [d.astype(np.asarray(g).dtype, copy=False) for d, g in zip(delta, global_)]
    return EncodedUpdate(out, scaled, inf_norm)


def decode_update(global_: NDArrays, delta: NDArrays) -> NDArrays:
    """Inverse of `encode_update` (without the scaling): `global + delta`."""
    return [np.asarray(g) + np.asarray(d, dtype=np.asarray(g).dtype) for g, d in zip(global_, delta)]


def check_arrays(
    arrays: NDArrays,
    reference: NDArrays,
    *,
    what: str,
    max_abs: float | None = None,
) -> None:
    """Refuse arrays that do not match `reference` in count, shape or dtype, hold NaN/inf, or
    (with `max_abs`) exceed a magnitude bound. Raises `ModelMismatchError` naming the tensor."""
    if len(arrays) != len(reference):
        raise ModelMismatchError(
            f"{what}: expected {len(reference)} tensors, got {len(arrays)} (different model architecture).",
            "use the same model configuration on the server and every site.",
        )
    for i, (a, r) in enumerate(zip(arrays, reference)):
        a = np.asarray(a)
        r = np.asarray(r)
        if a.shape != r.shape:
            raise ModelMismatchError(
                f"{what}: tensor {i} has shape {a.shape}, expected {r.shape}.",
                "use the same model configuration on the server and every site.",
            )
        if a.dtype != r.dtype:
            raise ModelMismatchError(
                f"{what}: tensor {i} has dtype {a.dtype}, expected {r.dtype}.",
                "send float32 tensors produced by the medfed model registry.",
            )
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ModelMismatchError(
                f"{what}: tensor {i} contains NaN or infinite values.",
                "the sender's training diverged; lower the learning rate and restart from the last checkpoint.",
            )
        if max_abs is not None and a.size and float(np.max(np.abs(a))) > max_abs:
            raise ModelMismatchError(
                f"{what}: tensor {i} has values up to {float(np.max(np.abs(a))):.3g}, above the bound {max_abs:.3g}.",
                "updates must respect secagg-update-bound; the sender is misconfigured or hostile.",
            )


def nbytes(arrays: NDArrays) -> int:
    return int(sum(np.asarray(a).nbytes for a in arrays))
