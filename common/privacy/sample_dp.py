"""privacy-mode=sample-dp: DP-SGD (Opacus) at every site, an (epsilon, delta) budget per site.

The site keeps a privacy ledger and refuses to train past its budget (client/privacy/private_trainer.py);
the server only records the epsilon each site reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.privacy.mode import DP_SGD, PrivacyMode, dp_budget_problems

if TYPE_CHECKING:
    from common.config import PrivacyConfig


class SampleDP(PrivacyMode):
    name = "sample-dp"
    label = "Differential privacy at every hospital (DP-SGD, per-patient guarantee)"
    sample_level = True
    local_training = DP_SGD

    def problems(self, privacy: PrivacyConfig) -> list[str]:
        return dp_budget_problems(privacy)


SAMPLE_DP = SampleDP()
