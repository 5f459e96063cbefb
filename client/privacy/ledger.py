"""The site's privacy ledger: what each run has spent of its (epsilon, delta) budget.

Flower's own Opacus example builds a new `PrivacyEngine` every round, so its epsilon never
accumulates. Here the accountant's history (Opacus `state_dict()`: a list of
(noise_multiplier, sample_rate, steps)) is stored per *scope* (a run key) in a JSON file
that lives on the site and survives restarts. Rules:

* Writes are atomic (temp file in the same folder, fsync, `os.replace`, fsync of the
  folder) and serialised between processes with a lock file, so a crash leaves either the
  old or the new ledger, never a torn one.
* A ledger that cannot be read is a `DataError` telling the operator to restore it from
  backup. It is never reset: a fresh ledger would silently restart spending at zero.
* A scope's budget can be lowered, but raising it (epsilon or delta) needs an explicit
  `allow_budget_change=True`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from common.atomic import atomic_write_text
from common.errors import ConfigError, DataError

LEDGER_FORMAT = "medfed-privacy-ledger"
LEDGER_VERSION = 1
STATUSES = ("ok", "exhausted")

HistoryItem = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps), as in Opacus


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RoundRecord:
    """Epsilon after one round. `completed` is False while the round is only reserved
    (written before training); a crashed round stays reserved and still counts as spent."""

    epsilon: float
    steps: int
    completed: bool = False
    at: str = field(default_factory=_now)


@dataclass
class LedgerEntry:
    """Everything recorded for one scope."""

    accountant: str
    delta: float
    epsilon_budget: float
    history: list[HistoryItem] = field(default_factory=list)
    noise_multiplier: float | None = None  # calibrated once per scope, reused after restarts
    sample_rate: float | None = None
    planned_steps: int | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    status: str = "ok"
    updated_at: str = field(default_factory=_now)

    @property
    def spent(self) -> float:
        """Epsilon after the latest (possibly only reserved) round; 0 before any round."""
        return self.rounds[-1].epsilon if self.rounds else 0.0

    @property
    def steps(self) -> int:
        return sum(s for _, _, s in self.history)

    def accountant_state(self) -> dict[str, Any]:
        """The dict Opacus' `IAccountant.load_state_dict` expects."""
        return {"history": [tuple(h) for h in self.history], "mechanism": self.accountant}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [list(h) for h in self.history]
        return out

    @classmethod
    def from_json(cls, raw: Any) -> "LedgerEntry":
        """Parse and validate; any inconsistency raises ValueError (the caller makes it a DataError)."""
        if not isinstance(raw, dict):
            raise ValueError("an entry is not an object")
        history = [_history_item(h) for h in _list(raw.get("history"), "history")]
        rounds = [_round(r) for r in _list(raw.get("rounds"), "rounds")]
        entry = cls(
            accountant=str(raw.get("accountant")),
            delta=_number(raw.get("delta"), "delta"),
            epsilon_budget=_number(raw.get("epsilon_budget"), "epsilon_budget"),
            history=history,
            noise_multiplier=_optional(raw.get("noise_multiplier"), _number, "noise_multiplier"),
            sample_rate=_optional(raw.get("sample_rate"), _number, "sample_rate"),
            planned_steps=_optional(raw.get("planned_steps"), _count, "planned_steps"),
            rounds=rounds,
            status=str(raw.get("status")),
            updated_at=str(raw.get("updated_at", "")),
        )
        if entry.status not in STATUSES:
            raise ValueError(f"status {entry.status!r} is not one of {STATUSES}")
        if not 0 < entry.delta < 1 or entry.epsilon_budget <= 0:
            raise ValueError("the recorded budget is out of range")
        return entry


def _round(r: Any) -> RoundRecord:
    if not isinstance(r, dict):
        raise ValueError(f"round {r!r} is not an object")
    return RoundRecord(
        epsilon=_number(r.get("epsilon"), "round epsilon"),
        steps=_count(r.get("steps"), "round steps"),
        completed=bool(r.get("completed")),
        at=str(r.get("at", "")),
    )


def _list(x: Any, what: str) -> list:
    if not isinstance(x, list):
        raise ValueError(f"{what} is not a list")
    return x


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{what} is not a finite non-negative number: {x!r}")
    return float(x)


def _count(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise ValueError(f"{what} is not a non-negative integer: {x!r}")
    return x


def _optional(x: Any, parse: Callable[[Any, str], Any], what: str) -> Any:
    return None if x is None else parse(x, what)


def _history_item(h: Any) -> HistoryItem:
    if not isinstance(h, list) or len(h) != 3:
        raise ValueError(f"history item {h!r} is not [noise_multiplier, sample_rate, steps]")
    sigma, q, steps = _number(h[0], "noise multiplier"), _number(h[1], "sample rate"), _count(h[2], "steps")
    if not 0 < q <= 1:
        raise ValueError(f"sample rate {q} is outside (0, 1]")
    return (sigma, q, steps)


class PrivacyLedger:
    """A JSON file of `LedgerEntry` per scope. Every operation re-reads the file, so several
    processes (a restarted client, a status command) always see the latest spending."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._read()  # fail early on a corrupt ledger

    # ------------------------------------------------------------------ reading

    def _corrupt(self, detail: str) -> DataError:
        return DataError(
            f"The privacy ledger {self.path} is corrupt or unreadable ({detail}).",
            "restore it from your backup of this site's files. Do not delete it: without it the site's "
            "privacy spending would restart at zero, breaking the promised privacy budget.",
        )

    def _read(self) -> dict[str, LedgerEntry]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            raise self._corrupt(str(err)) from None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("format") != LEDGER_FORMAT:
                raise ValueError(f"not a {LEDGER_FORMAT} file")
            if raw.get("version") != LEDGER_VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            scopes = raw.get("scopes")
            if not isinstance(scopes, dict):
                raise ValueError("'scopes' is missing")
            return {str(k): LedgerEntry.from_json(v) for k, v in scopes.items()}
        except (ValueError, TypeError, AttributeError) as err:
            raise self._corrupt(str(err)) from None

    def entry(self, scope: str) -> LedgerEntry | None:
        return self._read().get(scope)

    def scopes(self) -> list[str]:
        return list(self._read())

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per scope: epsilon spent, budget, what is left, rounds recorded, delta and status."""
        return {
            scope: {
                "spent": e.spent,
                "budget": e.epsilon_budget,
                "left": max(0.0, e.epsilon_budget - e.spent),
                "rounds": len(e.rounds),
                "delta": e.delta,
                "accountant": e.accountant,
                "status": e.status,
            }
            for scope, e in self._read().items()
        }

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: dict[str, LedgerEntry]) -> None:
        doc = {
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "scopes": {k: e.to_json() for k, e in entries.items()},
        }
        # 0600: the ledger is the site's record of privacy spending, not for other local users.
        atomic_write_text(self.path, json.dumps(doc, indent=2, allow_nan=False), mode=0o600)

    def update(self, scope: str, change: Callable[[LedgerEntry], None]) -> LedgerEntry:
        """Apply `change` to the scope's entry and write the ledger atomically (under the lock)."""
        with self._locked():
            entries = self._read()
            if scope not in entries:
                raise KeyError(f"scope {scope!r} is not in the ledger {self.path}; open it first")
            entry = entries[scope]
            change(entry)
            entry.updated_at = _now()
            self._write(entries)
            return entry

    def open_scope(
        self,
        scope: str,
        *,
        accountant: str,
        delta: float,
        epsilon_budget: float,
        allow_budget_change: bool = False,
    ) -> LedgerEntry:
        """Create the scope, or check the requested budget against the recorded one.

        Lowering epsilon or delta is recorded (it only makes the promise stricter); raising
        either needs `allow_budget_change=True`. Switching accountants within a scope is refused.
        """
        if not scope:
            raise ConfigError("The privacy scope (run key) is empty.", "pass a non-empty scope, e.g. the run id.")
        with self._locked():
            entries = self._read()
            entry = entries.get(scope)
            if entry is None:
                entry = LedgerEntry(accountant=accountant, delta=delta, epsilon_budget=epsilon_budget)
            else:
                if entry.accountant != accountant:
                    raise ConfigError(
                        f"Scope {scope!r} in {self.path} was accounted with accountant={entry.accountant!r}, "
                        f"not {accountant!r}.",
                        f"keep accountant={entry.accountant} for this run, or start a new run (new scope).",
                    )
                raised = epsilon_budget > entry.epsilon_budget or delta > entry.delta
                if raised and not allow_budget_change:
                    raise ConfigError(
                        f"Scope {scope!r} has a recorded budget of epsilon={entry.epsilon_budget}, "
                        f"delta={entry.delta}; the request (epsilon={epsilon_budget}, delta={delta}) would raise it.",
                        "keep the recorded budget, or, if the data owner has approved a larger budget, "
                        "pass allow_budget_change=True explicitly.",
                    )
                if (epsilon_budget, delta) == (entry.epsilon_budget, entry.delta):
                    return entry
                entry.epsilon_budget, entry.delta = epsilon_budget, delta
                entry.status = "exhausted" if entry.spent >= epsilon_budget else "ok"
                entry.noise_multiplier = None  # the trainer recalibrates the noise for the new budget
            entry.updated_at = _now()
            entries[scope] = entry
            self._write(entries)
            return entry
