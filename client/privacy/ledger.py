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

Format v2 adds a site-level `lifetime` section: the hospital's budget over all runs
(`total_epsilon`, `delta`), the `spent` epsilon of every scope's history composed with RDP
(client/privacy/lifetime.py) after the last write, and the one-step RDP curves seen so far
(a cache that keeps each round's composition cheap; rebuilt from the histories when the
orders change). It is rewritten with every scope change, in the same atomic write under the
same lock, so it can never lag behind the scopes. A v1 ledger (no lifetime section) is
migrated on reading: every scope is kept as it is, the lifetime is recomputed from the
histories (delta: the smallest scope delta, the stricter reading), and v2 is written on the
next write. A renamed run therefore never brings fresh budget: the lifetime total counts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from client.privacy.lifetime import ORDERS, HistoryItem, RdpCurves, composed_epsilon, projected_total
from common.atomic import atomic_write_text
from common.errors import ConfigError, DataError, PrivacyBudgetExceededError

LEDGER_FORMAT = "medfed-privacy-ledger"
LEDGER_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: before the lifetime section (migrated on reading)
STATUSES = ("ok", "exhausted")


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


@dataclass
class Lifetime:
    """The site's spending over all runs on its data.

    total_epsilon: the hospital's lifetime budget (None until the site's policy sets it, e.g.
    in a migrated v1 ledger); delta: the delta `spent` is computed at (None: no scope yet);
    spent: every scope's history composed with RDP, as of `updated_at`."""

    total_epsilon: float | None = None
    delta: float | None = None
    spent: float = 0.0
    updated_at: str = field(default_factory=_now)

    @property
    def left(self) -> float | None:
        return None if self.total_epsilon is None else max(0.0, self.total_epsilon - self.spent)

    @classmethod
    def from_json(cls, raw: Any) -> "Lifetime":
        if not isinstance(raw, dict):
            raise ValueError("'lifetime' is not an object")
        out = cls(
            total_epsilon=_optional(raw.get("total_epsilon"), _number, "lifetime total_epsilon"),
            delta=_optional(raw.get("delta"), _number, "lifetime delta"),
            spent=_number(raw.get("spent"), "lifetime spent"),
            updated_at=str(raw.get("updated_at", "")),
        )
        if out.delta is not None and not 0 < out.delta < 1:
            raise ValueError("the lifetime delta is out of range")
        if out.total_epsilon is not None and out.total_epsilon <= 0:
            raise ValueError("the lifetime total_epsilon is not positive")
        return out


@dataclass
class _Document:
    """One read of the file: the scopes, the lifetime section and the cached RDP curves."""

    entries: dict[str, LedgerEntry]
    lifetime: Lifetime
    curves: RdpCurves


def _migrated_lifetime(entries: dict[str, LedgerEntry]) -> Lifetime:
    """A v1 ledger's lifetime: no total budget yet, delta the strictest recorded."""
    return Lifetime(delta=min((e.delta for e in entries.values()), default=None))


def _curves(raw: Any) -> RdpCurves:
    """The cached curves; curves computed for other orders (another Opacus) are dropped and
    recomputed from the histories (they are a cache, the histories are the record)."""
    if raw is None or raw.get("orders") != list(ORDERS):
        return RdpCurves()
    return RdpCurves.from_json(raw.get("curves"))


class PrivacyLedger:
    """A JSON file of `LedgerEntry` per scope. Every operation re-reads the file, so several
    processes (a restarted client, a status command) always see the latest spending."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # Curves this object has computed or read: a projection's new (sigma, q) curve is then
        # not computed again by the reservation write that follows it.
        self._curves = RdpCurves()
        self._read()  # fail early on a corrupt ledger

    # ------------------------------------------------------------------ reading

    def _corrupt(self, detail: str) -> DataError:
        return DataError(
            f"The privacy ledger {self.path} is corrupt or unreadable ({detail}).",
            "restore it from your backup of this site's files. Do not delete it: without it the site's "
            "privacy spending would restart at zero, breaking the promised privacy budget.",
        )

    def _load(self) -> _Document:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Document({}, Lifetime(), self._curves)
        except (OSError, UnicodeDecodeError) as err:
            raise self._corrupt(str(err)) from None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("format") != LEDGER_FORMAT:
                raise ValueError(f"not a {LEDGER_FORMAT} file")
        except (ValueError, TypeError) as err:
            raise self._corrupt(str(err)) from None
        version = raw.get("version")
        if version not in READABLE_VERSIONS:
            raise DataError(
                f"The privacy ledger {self.path} has format version {version!r}; this medfed reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}.",
                "run the medfed version that wrote it (upgrade this site), or restore the ledger from your "
                "backup. Do not delete it: the site's privacy spending would restart at zero.",
            )
        try:
            scopes = raw.get("scopes")
            if not isinstance(scopes, dict):
                raise ValueError("'scopes' is missing")
            entries = {str(k): LedgerEntry.from_json(v) for k, v in scopes.items()}
            if version == 1:
                return _Document(entries, _migrated_lifetime(entries), self._curves)
            curves = self._curves.absorb(_curves(raw.get("rdp")))
            return _Document(entries, Lifetime.from_json(raw.get("lifetime")), curves)
        except (ValueError, TypeError, AttributeError) as err:
            raise self._corrupt(str(err)) from None

    def _read(self) -> dict[str, LedgerEntry]:
        return self._load().entries

    def histories(self) -> dict[str, list[HistoryItem]]:
        """Every scope's accountant history: what the lifetime total composes."""
        return {scope: list(e.history) for scope, e in self._read().items()}

    def lifetime(self) -> Lifetime:
        """The lifetime section (for a v1 ledger: as migrated, spent recomputed)."""
        doc = self._load()
        return dataclasses.replace(doc.lifetime, spent=self._spent(doc))

    def curves(self) -> RdpCurves:
        """The one-step RDP curves the ledger has cached: pass them to `lifetime.run_epsilon` so a
        round's projection in a fresh process needs no Opacus `compute_rdp`."""
        return self._load().curves

    def lifetime_spent(self, delta: float) -> float:
        """Every scope's history composed at `delta` (the site's policy delta)."""
        doc = self._load()
        return composed_epsilon([e.history for e in doc.entries.values()], delta, doc.curves)

    def projected_total(self, scope: str, extra_history: list[HistoryItem], delta: float) -> float:
        """The lifetime epsilon if `scope` took the steps of `extra_history` too (one read)."""
        return self._projected_total(self._load(), scope, extra_history, delta)

    @staticmethod
    def _projected_total(doc: _Document, scope: str, extra_history: list[HistoryItem], delta: float) -> float:
        histories = {name: e.history for name, e in doc.entries.items()}
        return projected_total(histories, scope, extra_history, delta, doc.curves)

    def spending(self, scope: str) -> tuple[float, float]:
        """(epsilon spent by `scope`, 0 if it has not trained; the composed lifetime epsilon, as
        `lifetime().spent`), from one read: what an audit record states."""
        doc = self._load()
        entry = doc.entries.get(scope)
        return (entry.spent if entry is not None else 0.0), self._spent(doc)

    @staticmethod
    def _spent(doc: _Document) -> float:
        if doc.lifetime.delta is None:
            return doc.lifetime.spent
        return composed_epsilon([e.history for e in doc.entries.values()], doc.lifetime.delta, doc.curves)

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

    def check_lifetime(self, scope: str, extra_history: list[HistoryItem]) -> float:
        """The projected lifetime epsilon if `scope` takes the steps of `extra_history`, checked
        against the recorded lifetime budget before any gradient: over it is a
        `PrivacyBudgetExceededError`, as for a run's own budget. No recorded budget is refused
        too (fail closed): record the site policy's with `set_lifetime_budget` first."""
        doc = self._load()  # one read: this runs on every private round, inside the ledger lock
        life = doc.lifetime
        if life.total_epsilon is None or life.delta is None:
            raise ConfigError(
                f"The privacy ledger {self.path} has no lifetime budget (total-epsilon) recorded.",
                "record the site policy's budget with set_lifetime_budget(total_epsilon=..., delta=...) first.",
            )
        projected = self._projected_total(doc, scope, extra_history, life.delta)
        if projected > life.total_epsilon:
            raise PrivacyBudgetExceededError(
                f"This round of run {scope!r} would raise the site's lifetime epsilon, composed over all "
                f"{len(doc.entries)} runs on its data, to {projected:.4f}, above its total-epsilon of "
                f"{life.total_epsilon} (delta={life.delta}; spent so far {life.spent:.4f}). Nothing was trained.",
                "the site's lifetime budget is spent: only the data owner can raise total-epsilon in site.toml "
                "[privacy]; a new run name brings no fresh budget.",
            )
        return projected

    def _write(self, doc: _Document) -> None:
        """Write scopes and the lifetime recomputed from them, in one atomic replace."""
        lifetime = doc.lifetime
        if lifetime.delta is None and doc.entries:
            lifetime.delta = min(e.delta for e in doc.entries.values())
        if lifetime.delta is not None:
            lifetime.spent = composed_epsilon([e.history for e in doc.entries.values()], lifetime.delta, doc.curves)
        lifetime.updated_at = _now()
        out = {
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "lifetime": asdict(lifetime),
            "rdp": {"orders": list(ORDERS), "curves": doc.curves.to_json()},
            "scopes": {k: e.to_json() for k, e in doc.entries.items()},
        }
        # 0600: the ledger is the site's record of privacy spending, not for other local users.
        atomic_write_text(self.path, json.dumps(out, indent=2, allow_nan=False), mode=0o600)

    def update(self, scope: str, change: Callable[[LedgerEntry], None]) -> LedgerEntry:
        """Apply `change` to the scope's entry and write the ledger atomically (under the lock)."""
        with self._locked():
            doc = self._load()
            if scope not in doc.entries:
                raise KeyError(f"scope {scope!r} is not in the ledger {self.path}; open it first")
            entry = doc.entries[scope]
            change(entry)
            entry.updated_at = _now()
            self._write(doc)
            return entry

    def set_lifetime_budget(self, *, total_epsilon: float, delta: float) -> Lifetime:
        """Record the site policy's lifetime budget (site.toml `total-epsilon`, `delta`).

        Unlike a scope's budget, raising it needs no flag: it only ever comes from the
        hospital's own site.toml, never from a run. The spent total is recomputed at `delta`."""
        if not (total_epsilon > 0 and 0 < delta < 1):
            raise ConfigError(
                f"The lifetime budget total-epsilon={total_epsilon}, delta={delta} is out of range.",
                "use a positive total-epsilon and a delta in (0, 1) in site.toml [privacy].",
            )
        with self._locked():
            doc = self._load()
            if (doc.lifetime.total_epsilon, doc.lifetime.delta) != (total_epsilon, delta) or not self.path.exists():
                doc.lifetime.total_epsilon, doc.lifetime.delta = total_epsilon, delta
                self._write(doc)
            return self.lifetime()

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
            doc = self._load()
            entries = doc.entries
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
            self._write(doc)
            return entry
