"""What a privacy mode is: one object that answers every question the code asks about it.

A mode used to be a string compared in a dozen files. Now each mode is one `PrivacyMode`
subclass in its own file of this package, and the rest of medfed asks the mode object:
  * config validation asks for its `problems` (and the registry for the known names);
  * the site asks which local trainer it needs (`local_training`, a key that
    client/privacy/trainers.py maps to a trainer) and whether it keeps a privacy ledger (`sample_level`);
  * the server asks which strategy wrapper it needs (`aggregate_wrapper`, a key that
    server/privacy/wrappers.py maps to a Flower DP wrapper), the bound every site's update must
    respect (`update_bound`), and what goes into privacy.json (`calibrated`, `privacy_record`,
    `setup_warnings`);
  * the report and the command line ask for its `label` and whether it is private at all.
The trainer and the wrapper are named by key, not imported: `common/` may not import `client/`
or `server/`, and the ClientApp must load without torch or Opacus.

This module imports nothing from common.config at run time: config validation imports the
registry, so the modes see configuration objects only through their attributes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from common.config import PrivacyConfig, RunConfig, SecAggConfig

# Keys of the local trainers (client/privacy/trainers.py) and strategy wrappers (server/privacy/wrappers.py).
DP_SGD = "dp-sgd"
PLAIN = "plain"
CLIENT_SIDE_FIXED_CLIPPING = "client-side-fixed-clipping"

# What a site's epsilon column says when its mode spends no per-sample budget.
NO_SAMPLE_DP_LABEL = "no sample-level DP"

ACCOUNTANTS = ("rdp", "prv")
CLIPPINGS = ("flat", "ghost")


class PrivacyMode:
    """Base class: a mode without differential privacy of its own; subclasses override what differs.

    The defaults are the safe reading for anything a mode does not say: plain local training, no
    server wrapper, the configured SecAgg+ bound, nothing extra in privacy.json.
    """

    name: ClassVar[str]
    label: ClassVar[str]  # one sentence for the report's "Privacy" row
    private: ClassVar[bool] = True  # False only for a run without any DP (warned about everywhere)
    sample_level: ClassVar[bool] = False  # DP-SGD at the site: per-site epsilon and a privacy ledger
    local_training: ClassVar[str] = PLAIN
    aggregate_wrapper: ClassVar[str | None] = None

    def problems(self, privacy: PrivacyConfig) -> list[str]:
        """Every problem with the privacy settings this mode reads (all at once, none raised)."""
        return []

    def update_bound(self, secagg: SecAggConfig, privacy: PrivacyConfig) -> float:
        """The L-infinity bound every site's update must respect (SecAgg+'s clipping range)."""
        return float(secagg.update_bound)

    def calibrated(self, cfg: RunConfig) -> RunConfig:
        """`cfg` with any privacy parameter the server derives before round 1 filled in."""
        return cfg

    def privacy_record(self, cfg: RunConfig) -> dict | None:
        """What the server adds to privacy.json for this mode (None: nothing)."""
        return None

    def setup_warnings(self, cfg: RunConfig, num_sites: int) -> list[str]:
        """Warnings for the run's event log before round 1."""
        return []

    def __repr__(self) -> str:
        return f"<privacy mode {self.name}>"


def dp_budget_problems(privacy: PrivacyConfig) -> list[str]:
    """The checks every mode with an (epsilon, delta) budget and a clipping norm shares."""
    out: list[str] = []
    if not finite(privacy.epsilon) or privacy.epsilon <= 0:
        out.append(f"epsilon={privacy.epsilon} must be a positive number (e.g. epsilon=8).")
    if not finite(privacy.delta) or not 0 < privacy.delta < 1:
        out.append(f"delta={privacy.delta} must be in (0, 1), typically below 1/number-of-records (e.g. 1e-5).")
    if privacy.accountant not in ACCOUNTANTS:
        out.append(f"accountant={privacy.accountant!r} is unknown; use 'rdp' or 'prv'.")
    if privacy.clipping not in CLIPPINGS:
        out.append(f"clipping={privacy.clipping!r} is unknown; use 'flat' or 'ghost'.")
    if not finite(privacy.max_grad_norm) or privacy.max_grad_norm <= 0:
        out.append(f"max-grad-norm={privacy.max_grad_norm} must be a positive number (e.g. 1.0).")
    return out


def finite(x: float) -> bool:
    """A number that is neither NaN nor infinite (strings and None are not numbers)."""
    return isinstance(x, (int, float)) and math.isfinite(x)
