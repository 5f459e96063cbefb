"""privacy-mode=none: no differential privacy. Only when named; reported as such everywhere."""

from __future__ import annotations

from common.privacy.mode import PrivacyMode


class NoDP(PrivacyMode):
    name = "none"
    label = "NO differential privacy (explicitly requested)"
    private = False


NO_DP = NoDP()
