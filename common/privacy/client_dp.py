"""privacy-mode=client-dp: client-level (site-level) DP with Flower's client-side fixed clipping.

Each site clips its whole update to `max-grad-norm` (client/mods.py), the server adds Gaussian
noise of std z * C to the sum after secure aggregation (server/privacy/wrappers.py). The guarantee
covers a site's whole contribution, and every site takes part in every round (sampling rate 1),
so the RDP accountant over the planned rounds gives the epsilon after each round.

Opacus is imported inside the functions that need it: the ClientApp imports this module too and
must load without torch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from common.privacy.mode import CLIENT_SIDE_FIXED_CLIPPING, PLAIN, PrivacyMode, dp_budget_problems, finite

if TYPE_CHECKING:
    from common.config import PrivacyConfig, RunConfig, SecAggConfig

# Below this many sites the noise on the average (std z * C / sites) swamps the signal.
CLIENT_DP_MIN_SITES = 50


class ClientDP(PrivacyMode):
    name = "client-dp"
    label = "Differential privacy per hospital (client-level, noise added after secure aggregation)"
    local_training = PLAIN  # clipping and noise act on the whole update, outside local training
    aggregate_wrapper = CLIENT_SIDE_FIXED_CLIPPING

    def problems(self, privacy: PrivacyConfig) -> list[str]:
        out = dp_budget_problems(privacy)
        if not finite(privacy.client_noise_multiplier) or privacy.client_noise_multiplier < 0:
            out.append(f"client-noise-multiplier={privacy.client_noise_multiplier} must be >= 0 (e.g. 0.5).")
        return out

    def update_bound(self, secagg: SecAggConfig, privacy: PrivacyConfig) -> float:
        """The clipping norm: its L2 bound implies the L-infinity bound SecAgg+ needs."""
        return float(privacy.max_grad_norm)

    def calibrated(self, cfg: RunConfig) -> RunConfig:
        """With `client-noise-multiplier = 0`, derive the multiplier from the (epsilon, delta)
        budget over the planned rounds, so `epsilon` means a budget in every mode."""
        if cfg.privacy.client_noise_multiplier > 0:
            return cfg
        from opacus.accountants.utils import get_noise_multiplier

        z = get_noise_multiplier(
            target_epsilon=cfg.privacy.epsilon,
            target_delta=cfg.privacy.delta,
            sample_rate=1.0,
            steps=cfg.federation.num_rounds,
            accountant="rdp",
        )
        return dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, client_noise_multiplier=float(z)))

    def privacy_record(self, cfg: RunConfig) -> dict:
        """Site-level epsilon after each round: Gaussian noise z * C on the sum, sampling rate 1."""
        from opacus.accountants import RDPAccountant

        z = cfg.privacy.client_noise_multiplier
        by_round: dict[str, float] = {}
        if z > 0:
            acc = RDPAccountant()
            for r in range(1, cfg.federation.num_rounds + 1):
                acc.step(noise_multiplier=z, sample_rate=1.0)
                by_round[str(r)] = float(acc.get_epsilon(cfg.privacy.delta))
        return {
            "noise_multiplier": z,
            "clipping_norm": cfg.privacy.max_grad_norm,
            "delta": cfg.privacy.delta,
            "epsilon_by_round": by_round if z > 0 else "infinite (no noise)",
            "accountant": "rdp (opacus), site-level, sampling rate 1",
            "epsilon_budget": cfg.privacy.epsilon,
        }

    def setup_warnings(self, cfg: RunConfig, num_sites: int) -> list[str]:
        if num_sites >= CLIENT_DP_MIN_SITES:
            return []
        z, c = cfg.privacy.client_noise_multiplier, cfg.privacy.max_grad_norm
        return [
            f"warning: client-level DP with only {num_sites} sites adds noise of std {z * c / num_sites:.3g} to every "
            f"coordinate of the averaged update (z={z:.3g}, C={c}); expect poor accuracy below ~{CLIENT_DP_MIN_SITES} "
            "sites — prefer privacy-mode=sample-dp for a small consortium"
        ]


CLIENT_DP = ClientDP()
