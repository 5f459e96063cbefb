"""Privacy ledger: atomic writes, corrupt files are errors (never a reset), budgets only go down."""

from __future__ import annotations

import json
import os

import pytest

from common import atomic as atomic_module
from client.privacy.ledger import PrivacyLedger, RoundRecord
from common.errors import ConfigError, DataError


def _open(ledger, scope="run-a", **kw):
    args = dict(accountant="rdp", delta=1e-5, epsilon_budget=4.0) | kw
    return ledger.open_scope(scope, **args)


def _spend(ledger, scope, history, eps):
    def change(e):
        e.history = history
        e.rounds.append(RoundRecord(epsilon=eps, steps=history[-1][2], completed=True))

    return ledger.update(scope, change)


def test_entries_survive_a_new_ledger_object_exactly(tmp_path):
    path = tmp_path / "site" / "ledger.json"  # parent folder is created
    led = PrivacyLedger(path)
    _open(led)
    _spend(led, "run-a", [(1.0931640625, 0.1, 30)], 1.25)
    again = PrivacyLedger(path).entry("run-a")
    assert again.accountant_state() == {"history": [(1.0931640625, 0.1, 30)], "mechanism": "rdp"}
    assert again.spent == 1.25 and again.steps == 30
    assert PrivacyLedger(path).summary() == {
        "run-a": {
            "spent": 1.25, "budget": 4.0, "left": 2.75, "rounds": 1, "delta": 1e-5, "accountant": "rdp", "status": "ok"
        }
    }


def test_write_is_atomic_a_crash_before_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ledger.json"
    led = PrivacyLedger(path)
    _open(led)
    _spend(led, "run-a", [(1.0, 0.1, 10)], 1.0)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(atomic_module.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        _spend(led, "run-a", [(1.0, 0.1, 20)], 1.5)
    assert path.read_bytes() == before  # old ledger intact
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []  # temp file cleaned up
    monkeypatch.undo()
    assert PrivacyLedger(path).entry("run-a").spent == 1.0


def test_write_goes_through_fsync_and_replace(tmp_path, monkeypatch):
    calls = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(atomic_module.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    monkeypatch.setattr(atomic_module.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    _open(PrivacyLedger(tmp_path / "ledger.json"))
    assert calls == ["fsync", "replace", "fsync"]  # file data, rename, folder entry


@pytest.mark.parametrize(
    "content",
    [
        b"",  # truncated to nothing
        b'{"format": "medfed-privacy-ledger", "version": 1, "scopes": {"r": {"accoun',  # torn write
        b"\xff\xfe garbage",
        b'{"format": "something-else"}',
        json.dumps(
            {"format": "medfed-privacy-ledger", "version": 1, "scopes": {"r": {"history": "x"}}}
        ).encode(),
    ],
)
def test_corrupt_ledger_is_a_data_error_never_a_reset(tmp_path, content):
    path = tmp_path / "ledger.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="restore it from your backup"):
        PrivacyLedger(path)
    assert path.read_bytes() == content  # left untouched for the operator


def test_budget_cannot_be_raised_silently(tmp_path):
    led = PrivacyLedger(tmp_path / "ledger.json")
    _open(led)
    _spend(led, "run-a", [(1.0, 0.1, 10)], 1.0)
    with pytest.raises(ConfigError, match="allow_budget_change=True"):
        _open(led, epsilon_budget=8.0)
    with pytest.raises(ConfigError, match="would raise it"):
        _open(led, delta=1e-3)
    assert led.entry("run-a").epsilon_budget == 4.0
    lowered = _open(led, epsilon_budget=3.0)  # stricter is fine
    assert lowered.epsilon_budget == 3.0 and lowered.spent == 1.0
    raised = _open(led, epsilon_budget=10.0, allow_budget_change=True)
    assert raised.epsilon_budget == 10.0 and raised.noise_multiplier is None  # noise is recalibrated
    with pytest.raises(ConfigError, match="accountant"):
        _open(led, epsilon_budget=10.0, accountant="prv")


def test_lowering_below_spending_marks_exhausted_and_scopes_are_independent(tmp_path):
    led = PrivacyLedger(tmp_path / "ledger.json")
    _open(led)
    _open(led, "run-b")
    _spend(led, "run-a", [(1.0, 0.1, 10)], 2.0)
    assert _open(led, epsilon_budget=1.5).status == "exhausted"
    summary = led.summary()
    assert summary["run-a"]["left"] == 0.0 and summary["run-b"]["spent"] == 0.0
    assert summary["run-b"]["status"] == "ok"
