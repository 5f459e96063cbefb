"""server/secure_aggregation.py: SecAgg+ ranges that cannot overflow, and its preconditions."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common.secure_aggregation.quantization import dequantize, quantize

from common.config import PrivacyConfig, SecAggConfig
from common.errors import ConfigError
from server.secure_aggregation import secagg_settings


@pytest.mark.parametrize("num_sites", [3, 4, 8, 50, 200])
def test_secagg_ranges_cannot_overflow_and_are_fine_grained(num_sites: int) -> None:
    s = secagg_settings(SecAggConfig(), PrivacyConfig(), num_sites=num_sites, largest_site=1000)
    assert s.quantization_range * (num_sites + 1) <= s.modulus_range
    assert s.quantization_range < 2**31  # Flower's int32 stochastic rounding
    assert s.num_shares > s.reconstruction_threshold >= 2
    # Quantising a sum of `num_sites` updates at the bound stays exact within one step per site.
    rng = np.random.default_rng(num_sites)
    updates = [rng.uniform(-s.clipping_range, s.clipping_range, 50) for _ in range(num_sites)]
    q = sum(quantize([u], s.clipping_range, s.quantization_range)[0].astype(np.int64) for u in updates)
    assert int(q.max()) < s.modulus_range
    recovered = dequantize([q], s.clipping_range, s.quantization_range)[0] - (num_sites - 1) * s.clipping_range
    np.testing.assert_allclose(recovered, sum(updates), atol=num_sites * s.quantization_step)


def test_client_dp_uses_the_clipping_norm_as_range() -> None:
    s = secagg_settings(SecAggConfig(), PrivacyConfig(mode="client-dp", max_grad_norm=0.3), num_sites=4, largest_site=10)
    assert s.clipping_range == 0.3


def test_secagg_needs_three_sites() -> None:
    with pytest.raises(ConfigError, match="at least"):
        secagg_settings(SecAggConfig(), PrivacyConfig(), num_sites=2, largest_site=10)
