"""The privacy room: every privacy mode, registered under its `privacy-mode` name.

Adding a mode is one file in this package (a `PrivacyMode` subclass, see mode.py) and one
registration line below; config validation, the site, the server, the report and the command
line all read the mode through this registry.
"""

from __future__ import annotations

from common.privacy.client_dp import CLIENT_DP
from common.privacy.mode import PrivacyMode
from common.privacy.no_dp import NO_DP
from common.privacy.sample_dp import SAMPLE_DP
from common.registry import Registry

PRIVACY_MODES: Registry[PrivacyMode] = Registry("privacy mode", setting="privacy-mode")
PRIVACY_MODES.register(SAMPLE_DP.name, SAMPLE_DP)
PRIVACY_MODES.register(CLIENT_DP.name, CLIENT_DP)
PRIVACY_MODES.register(NO_DP.name, NO_DP)


def privacy_mode(name: str) -> PrivacyMode:
    """The mode named `name`; an unknown name is a ConfigError listing the known ones."""
    return PRIVACY_MODES.get(name)


def recorded_mode(name: object) -> PrivacyMode | None:
    """The mode a run record (privacy.json) names, or None for a name this medfed does not know:
    a report of an old run folder then shows the name as written instead of failing."""
    return PRIVACY_MODES.get(name) if isinstance(name, str) and name in PRIVACY_MODES else None
