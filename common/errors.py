"""Errors that tell the user what went wrong *and what to do about it*.

Every user-facing failure in medfed is a `MedfedError`: the command-line layer turns it into
a readable message and a documented exit code instead of a traceback. Exit codes are stable
(documented in docs/RELIABILITY.md) so that scripts and systemd can react to them.
"""

from __future__ import annotations


class MedfedError(Exception):
    """Base class: a problem the user can fix, with the fix spelled out."""

    exit_code: int = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem}\n  How to fix: {self.fix}" if self.fix else self.problem


class ConfigError(MedfedError):
    """A configuration value is missing, of the wrong type or out of range."""

    exit_code = 2


class DataError(MedfedError):
    """Site data is missing, corrupt, of the wrong shape or otherwise unusable."""

    exit_code = 3


class DatasetUnavailableError(DataError):
    """A built-in dataset is not on disk and cannot be downloaded here."""

    exit_code = 4


class PrivacyBudgetExceededError(MedfedError):
    """Training would push a site's privacy spending past its budget; nothing is released."""

    exit_code = 5


class ModelMismatchError(MedfedError):
    """Received weights do not fit the model (architecture, shape, dtype or non-finite)."""

    exit_code = 6


class SecurityError(MedfedError):
    """Certificates or keys are missing or invalid, or an insecure setup was not asked for."""

    exit_code = 7


class FederationError(MedfedError):
    """The federation could not proceed (quorum not reached, server unreachable, ...)."""

    exit_code = 8


class SitePolicyRefusal(MedfedError):
    """A site refused a request because its own privacy policy does not allow it (a privacy
    mode it does not allow, a SecAgg+ cohort too small to hide its update, ...). The site
    decides this, not the server: the operator can only resubmit within the site's policy."""

    exit_code = 9
