"""Ledger v2: a lifetime section composed from every scope, written with the scopes; a v1
ledger (as the previous medfed wrote it) is migrated, never reset; a future or corrupt one is
refused with the file's name and the fix."""

from __future__ import annotations

import json
import logging

import pytest

from client.privacy import lifetime as lifetime_module
from client.privacy.ledger import LEDGER_VERSION, PrivacyLedger, RoundRecord
from client.privacy.lifetime import ORDERS, composed_epsilon
from common.errors import DataError

# Exactly what the v1 code (LEDGER_VERSION = 1) wrote: json.dumps(doc, indent=2) of these fields.
V1_SCOPES = {
    "study-a": {
        "accountant": "rdp", "delta": 1e-05, "epsilon_budget": 4.0,
        "history": [[1.0931640625, 0.05, 120]], "noise_multiplier": 1.0931640625, "sample_rate": 0.05,
        "planned_steps": 200, "rounds": [
            {"epsilon": 1.2, "steps": 60, "completed": True, "at": "2026-11-30T10:00:00+00:00"},
            {"epsilon": 1.9, "steps": 60, "completed": True, "at": "2026-11-30T10:05:00+00:00"},
        ],
        "status": "ok", "updated_at": "2026-11-30T10:05:00+00:00",
    },
    "study-b": {
        "accountant": "rdp", "delta": 1e-04, "epsilon_budget": 4.0,
        "history": [[1.3, 0.08, 90], [1.25, 0.08, 30]], "noise_multiplier": 1.25, "sample_rate": 0.08,
        "planned_steps": 120, "rounds": [
            {"epsilon": 2.5, "steps": 120, "completed": False, "at": "2026-11-30T11:00:00+00:00"},
        ],
        "status": "ok", "updated_at": "2026-11-30T11:00:00+00:00",
    },
}  # fmt: skip


def _write_v1(path) -> None:
    path.write_text(json.dumps({"format": "medfed-privacy-ledger", "version": 1, "scopes": V1_SCOPES}, indent=2))


def _dp_accounting(histories, delta: float) -> float:
    import dp_accounting

    logging.getLogger().setLevel(logging.ERROR)
    accountant = dp_accounting.rdp.RdpAccountant()
    for history in histories:
        for sigma, q, steps in history:
            accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.get_epsilon(delta)


def test_a_v1_ledger_is_migrated_with_every_scope_kept(tmp_path) -> None:
    path = tmp_path / "privacy-ledger.json"
    _write_v1(path)
    ledger = PrivacyLedger(path)
    histories = ledger.histories()
    assert histories == {"study-a": [(1.0931640625, 0.05, 120)], "study-b": [(1.3, 0.08, 90), (1.25, 0.08, 30)]}
    life = ledger.lifetime()
    assert life.total_epsilon is None and life.delta == 1e-05  # the strictest recorded delta
    assert life.spent == pytest.approx(composed_epsilon(histories.values(), 1e-05))
    assert json.loads(path.read_text())["version"] == 1  # reading never rewrites

    ledger.update("study-b", lambda e: e.rounds[-1].__setattr__("completed", True))
    written = json.loads(path.read_text())
    assert written["version"] == LEDGER_VERSION == 2
    for scope, old in V1_SCOPES.items():  # same field names, same values (but the update's)
        new = written["scopes"][scope]
        assert set(new) == set(old)
        assert {k: v for k, v in new.items() if k not in ("updated_at", "rounds")} == \
               {k: v for k, v in old.items() if k not in ("updated_at", "rounds")}
    assert written["lifetime"]["spent"] == pytest.approx(life.spent)
    assert written["rdp"]["orders"] == list(ORDERS) and len(written["rdp"]["curves"]) == 3


def test_the_lifetime_total_is_every_scope_composed_and_a_new_name_adds_to_it(tmp_path) -> None:
    path = tmp_path / "privacy-ledger.json"
    ledger = PrivacyLedger(path)
    life = ledger.set_lifetime_budget(total_epsilon=8.0, delta=1e-5)
    assert (life.total_epsilon, life.delta, life.spent) == (8.0, 1e-5, 0.0)
    for name, history in (("a", [(1.1, 0.04, 300)]), ("b", [(1.2, 0.05, 200)]), ("c", [(1.4, 0.03, 400)])):
        ledger.open_scope(name, accountant="rdp", delta=1e-5, epsilon_budget=4.0)
        ledger.update(name, lambda e, h=history: (setattr(e, "history", h),
                                                 e.rounds.append(RoundRecord(epsilon=1.0, steps=h[0][2]))))
    spent = PrivacyLedger(path).lifetime().spent
    independent = _dp_accounting(ledger.histories().values(), 1e-5)
    assert spent == pytest.approx(independent, rel=0.01) and spent <= 8.0
    assert ledger.lifetime_spent(1e-5) == pytest.approx(spent)
    assert json.loads(path.read_text())["lifetime"]["spent"] == pytest.approx(spent)
    # A run under a fresh name starts from the lifetime total, not from zero.
    fresh = ledger.projected_total("d", [(1.1, 0.04, 100)], 1e-5)
    assert fresh > spent
    assert fresh == pytest.approx(composed_epsilon([*ledger.histories().values(), [(1.1, 0.04, 100)]], 1e-5))


def test_cached_curves_spare_opacus_in_a_fresh_process(tmp_path, monkeypatch) -> None:
    path = tmp_path / "privacy-ledger.json"
    _write_v1(path)
    PrivacyLedger(path).set_lifetime_budget(total_epsilon=8.0, delta=1e-5)  # writes v2 with the curves
    import opacus.accountants.analysis.rdp as rdp

    def forbidden(**_kw):
        raise AssertionError("compute_rdp called although the ledger has the curve")

    monkeypatch.setattr(rdp, "compute_rdp", forbidden)
    monkeypatch.setattr(lifetime_module, "PROCESS_CURVES", lifetime_module.RdpCurves())
    assert PrivacyLedger(path).lifetime().spent > 0
    assert PrivacyLedger(path).projected_total("study-a", [(1.0931640625, 0.05, 10)], 1e-5) > 0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "medfed-privacy-ledger", "version": 3, "scopes": {}}, "format version 3"),
        ({"format": "medfed-privacy-ledger", "version": 2, "scopes": {}, "lifetime": {"spent": -1}}, "corrupt"),
        ({"format": "medfed-privacy-ledger", "version": 2, "scopes": {}}, "corrupt"),
        ({"format": "medfed-privacy-ledger", "version": 2, "scopes": {}, "lifetime": {"spent": 0},
          "rdp": {"orders": list(ORDERS), "curves": [[1.0, 0.1, [1.0]]]}}, "corrupt"),
    ],
)
def test_future_or_corrupt_v2_ledgers_are_refused_never_reset(tmp_path, doc, message) -> None:
    path = tmp_path / "privacy-ledger.json"
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    with pytest.raises(DataError, match=message) as info:
        PrivacyLedger(path)
    assert str(path) in info.value.problem and "backup" in info.value.fix and "Do not delete" in info.value.fix
    assert path.read_bytes() == before


def test_curves_of_other_orders_are_recomputed_not_trusted(tmp_path) -> None:
    path = tmp_path / "privacy-ledger.json"
    _write_v1(path)
    PrivacyLedger(path).set_lifetime_budget(total_epsilon=8.0, delta=1e-5)
    doc = json.loads(path.read_text())
    expected = doc["lifetime"]["spent"]
    doc["rdp"] = {"orders": [2, 3], "curves": [[1.3, 0.08, [99.0, 99.0]]]}
    path.write_text(json.dumps(doc))
    assert PrivacyLedger(path).lifetime().spent == pytest.approx(expected)


def test_check_lifetime_refuses_a_round_over_total_epsilon_whatever_the_run_is_called(tmp_path) -> None:
    from common.errors import ConfigError, PrivacyBudgetExceededError

    ledger = PrivacyLedger(tmp_path / "privacy-ledger.json")
    with pytest.raises(ConfigError, match="no lifetime budget"):
        ledger.check_lifetime("a", [(1.1, 0.05, 10)])
    ledger.open_scope("a", accountant="rdp", delta=1e-5, epsilon_budget=3.0)
    ledger.update("a", lambda e: setattr(e, "history", [(1.1, 0.05, 400)]))
    spent = ledger.lifetime_spent(1e-5)
    ledger.set_lifetime_budget(total_epsilon=spent + 0.05, delta=1e-5)
    small = ledger.check_lifetime("a", [(1.1, 0.05, 1)])
    assert spent < small <= spent + 0.05
    for name in ("a", "renamed"):
        with pytest.raises(PrivacyBudgetExceededError, match="lifetime epsilon") as info:
            ledger.check_lifetime(name, [(1.1, 0.05, 200)])
        assert "new run name brings no fresh budget" in info.value.fix


def test_a_new_runs_curve_is_computed_once_for_projection_and_write(tmp_path, monkeypatch) -> None:
    import opacus.accountants.analysis.rdp as rdp

    ledger = PrivacyLedger(tmp_path / "privacy-ledger.json")
    ledger.set_lifetime_budget(total_epsilon=8.0, delta=1e-5)
    ledger.open_scope("new", accountant="rdp", delta=1e-5, epsilon_budget=4.0)
    calls = []
    real = rdp.compute_rdp
    monkeypatch.setattr(rdp, "compute_rdp", lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.setattr(lifetime_module, "PROCESS_CURVES", lifetime_module.RdpCurves())
    projected = ledger.check_lifetime("new", [(1.2345, 0.0321, 50)])
    ledger.update("new", lambda e: setattr(e, "history", [(1.2345, 0.0321, 50)]))
    assert len(calls) == 1 and ledger.lifetime().spent == pytest.approx(projected)
