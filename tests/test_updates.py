"""common/updates.py: the update codec (delta against the global model, scaled into the bound)
and the checks that refuse malformed updates."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ModelMismatchError
from common.updates import check_arrays, decode_update, encode_update


def test_encode_decode_roundtrip_and_bound() -> None:
    g = [np.ones((3, 2), np.float32), np.zeros(4, np.float32)]
    local = [g[0] + 0.1, g[1] - 0.2]
    enc = encode_update(local, g, bound=1.0)
    assert not enc.scaled
    for a, b in zip(decode_update(g, enc.delta), local):
        np.testing.assert_allclose(a, b, atol=1e-6)
    big = [g[0] + 5.0, g[1] - 10.0]
    enc = encode_update(big, g, bound=1.0)
    assert enc.scaled and enc.inf_norm == pytest.approx(10.0)
    assert max(float(np.abs(d).max()) for d in enc.delta) <= 1.0 + 1e-6
    # direction kept: the scaled update is proportional to the original
    np.testing.assert_allclose(enc.delta[0] / enc.delta[1].mean(), (big[0] - g[0]) / (big[1] - g[1]).mean(), rtol=1e-5)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ([np.zeros((3, 2), np.float32)], "expected 2 tensors"),
        ([np.zeros((2, 3), np.float32), np.zeros(4, np.float32)], "shape"),
        ([np.zeros((3, 2), np.float64), np.zeros(4, np.float32)], "dtype"),
        ([np.full((3, 2), np.nan, np.float32), np.zeros(4, np.float32)], "NaN"),
        ([np.full((3, 2), 9.0, np.float32), np.zeros(4, np.float32)], "above the bound"),
    ],
)
def test_check_arrays_rejects_bad_updates(arrays, match) -> None:
    ref = [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)]
    with pytest.raises(ModelMismatchError, match=match):
        check_arrays(arrays, ref, what="update", max_abs=1.0)
