"""Server-side DP wrappers, named by key by the privacy modes (common/privacy/).

A mode that adds noise on the server says which wrapper it needs (`aggregate_wrapper`); this
registry maps the key to Flower's wrapper around the inner strategy. Wrapping happens inside
GuardedStrategy, so the wrapper clips and noises decoded updates, never masked integers.
"""

from __future__ import annotations

from typing import Callable

from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, Strategy

from common.config import PrivacyConfig
from common.privacy import privacy_mode
from common.privacy.mode import CLIENT_SIDE_FIXED_CLIPPING
from common.registry import Registry

# (inner strategy, privacy settings, sites sampled per round) -> the wrapped strategy
Wrapper = Callable[[Strategy, PrivacyConfig, int], Strategy]

WRAPPERS: Registry[Wrapper] = Registry("strategy wrapper", setting="privacy-mode")


def wrap_for_privacy(inner: Strategy, privacy: PrivacyConfig, *, num_sites: int) -> Strategy:
    """`inner` wrapped as `privacy.mode` asks; unchanged for a mode without a server wrapper."""
    key = privacy_mode(privacy.mode).aggregate_wrapper
    return inner if key is None else WRAPPERS.get(key)(inner, privacy, num_sites)


def _client_side_fixed_clipping(inner: Strategy, privacy: PrivacyConfig, num_sites: int) -> Strategy:
    """Sites clip their updates to max-grad-norm (client/mods.py); Gaussian noise z * C on the sum."""
    return DifferentialPrivacyClientSideFixedClipping(
        inner,
        noise_multiplier=privacy.client_noise_multiplier,
        clipping_norm=privacy.max_grad_norm,
        num_sampled_clients=num_sites,
    )


WRAPPERS.register(CLIENT_SIDE_FIXED_CLIPPING, _client_side_fixed_clipping)
