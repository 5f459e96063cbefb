"""The gate every site's update passes before it is averaged.

Sites send bounded updates (their change to the global model, within the SecAgg+ update bound:
client/mods.py). The gate checks what the server can check and turns an update back into
weights; a `ModelMismatchError` means "keep this site out of the average", with the reason to
record. Under SecAgg+ the server never sees a site's own update, only the aggregate, so only the
aggregate's shapes can be checked; without it, each update's size and bound are checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ModelMismatchError
from common.updates import check_arrays, decode_update, nbytes

__all__ = ["UpdateGate"]

BOUND_SLACK = 1 + 1e-6  # float rounding at the site may land a clipped value just past the bound


@dataclass(frozen=True)
class UpdateGate:
    """`secure`: updates arrive securely aggregated. `max_update_bytes`: the largest plain update
    accepted (a few times the model's size); anything larger is a misconfigured or hostile site."""

    update_bound: float
    secure: bool
    max_update_bytes: int

    def admit(self, update: list[np.ndarray], global_weights: list[np.ndarray], *, site: str) -> list[np.ndarray]:
        """The weights `update` leads to; raises ModelMismatchError if it must be rejected."""
        if self.secure:
            if len(update) == len(global_weights):
                # SecAgg+ dequantises to float64; compare against the model's own dtypes.
                update = [np.asarray(u).astype(np.asarray(g).dtype) for u, g in zip(update, global_weights)]
            check_arrays(update, global_weights, what="securely aggregated update")
        else:
            if nbytes(update) > self.max_update_bytes:
                raise ModelMismatchError(
                    f"update of {nbytes(update)} bytes exceeds the limit of {self.max_update_bytes} bytes.",
                    "the site is misconfigured or hostile.",
                )
            check_arrays(update, global_weights, what=f"update from {site}", max_abs=self.update_bound * BOUND_SLACK)
        return decode_update(global_weights, update)
