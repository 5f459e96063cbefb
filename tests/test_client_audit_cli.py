"""`medfed client audit`: the table, --json and --verify exit codes; `medfed client status`: the lifetime
total composed over every run, against total-epsilon (or its fail-closed default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from client.privacy.audit import AuditLog, release_digest
from client.privacy.ledger import PrivacyLedger
from common.errors import DataError
from tests.deploy_files import app, pki_dir, runner, site_toml  # noqa: F401 - pki_dir is a fixture


def _site_with_log(tmp_path: Path, pki_dir: Path, **kwargs: str) -> tuple[Path, AuditLog]:
    path = site_toml(tmp_path, pki_dir, **kwargs)
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    log.append(run="heart-a", round=1, message_type="train", decision="trained",
               epsilon_run_before=0.0, epsilon_run_after=1.25, epsilon_total_before=0.0, epsilon_total_after=1.25,
               released=release_digest([np.zeros(4, np.float32)], {"epsilon": 1.25, "num-examples": 30}))
    log.append(run="heart-b", round=1, message_type="train", decision="refused",
               reason="the run asks for privacy-mode none; this site allows sample-dp only")
    return path, log


def test_the_table_lists_every_record(tmp_path: Path, pki_dir: Path) -> None:
    path, _ = _site_with_log(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path)])
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert header.split()[:6] == ["seq", "time", "(UTC)", "run", "round", "type"]
    assert first.split()[0] == "1" and "heart-a" in first and "trained" in first and "1.250" in first
    assert "update+epsilon+num-examples (" in first
    assert "refused" in second and "nothing" in second and "allows sample-dp only" in second


def test_an_empty_site_has_no_records(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path)])
    assert result.exit_code == 0 and "no audit records yet" in result.output
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--verify"])
    assert result.exit_code == 0 and "intact, 0 record(s)" in result.output


def test_json_carries_the_records_and_the_verdict(tmp_path: Path, pki_dir: Path) -> None:
    path, log = _site_with_log(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["path"] == str(log.path) and out["verdict"]["ok"] and out["verdict"]["count"] == 2
    assert out["records"] == log.records()


def test_verify_exits_0_when_intact_and_3_naming_the_first_bad_record(tmp_path: Path, pki_dir: Path) -> None:
    path, log = _site_with_log(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--verify"])
    assert result.exit_code == 0 and "intact, 2 record(s)" in result.output

    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text(lines[0].replace('"epsilon_run_after":1.25', '"epsilon_run_after":0.25') + lines[1])
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--verify"])
    assert result.exit_code == DataError.exit_code == 3
    assert "record seq 1 (line 1) was edited" in result.output and "How to fix: restore" in result.output
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--verify", "--json"])
    assert result.exit_code == 3
    verdict = json.loads(result.stdout)["verdict"]
    assert (verdict["ok"], verdict["first_bad_seq"], verdict["first_bad_line"]) == (False, 1, 1)
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path)])  # the table still shows, with a warning
    assert result.exit_code == 0 and "warning: the audit log" in result.output


def test_verify_catches_records_cut_off_the_end(tmp_path: Path, pki_dir: Path) -> None:
    path, log = _site_with_log(tmp_path, pki_dir)
    log.path.write_text(log.path.read_text().splitlines(keepends=True)[0])
    result = runner.invoke(app, ["client", "audit", "--site-config", str(path), "--verify"])
    assert result.exit_code == 3 and "records 2..2 were cut off" in result.output


def _spend(ledger: PrivacyLedger, scope: str, history: list[tuple[float, float, int]]) -> None:
    ledger.open_scope(scope, accountant="rdp", delta=1e-4, epsilon_budget=5.0)
    ledger.update(scope, lambda e: e.history.extend(history))


def test_status_shows_the_composed_lifetime_total(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir, privacy="epsilon = 5.0\ntotal-epsilon = 8.0\ndelta = 1e-4\n")
    ledger = PrivacyLedger(tmp_path / "state" / "privacy-ledger.json")
    for scope in ("a", "b", "c"):  # three run names: one composed total, not three fresh budgets
        _spend(ledger, scope, [(1.1, 0.05, 40)])
    accountant = RDPAccountant()
    accountant.history = [(1.1, 0.05, 40)] * 3
    expected = accountant.get_epsilon(1e-4)
    result = runner.invoke(app, ["client", "status", "--site-config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    life = json.loads(result.stdout)["lifetime"]
    assert life["composed_epsilon"] == pytest.approx(expected, rel=1e-9) and life["runs"] == 3
    assert life["total_epsilon"] == 8.0 and life["left"] == pytest.approx(8.0 - expected)
    assert life["source"] == "site.toml"
    result = runner.invoke(app, ["client", "status", "--site-config", str(path)])
    assert f"lifetime budget (all 3 run(s) composed): epsilon {expected:.3f} of total-epsilon 8" in result.output


def test_without_total_epsilon_all_runs_share_one_run_budget(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "status", "--site-config", str(path), "--json"])
    life = json.loads(result.stdout)["lifetime"]
    assert (life["composed_epsilon"], life["total_epsilon"], life["left"]) == (0.0, 5.0, 5.0)
    assert life["source"].startswith("default: [privacy] epsilon")

    path = site_toml(tmp_path, pki_dir, privacy="epsilon = 5.0\ntotal-epsilon = -1\ndelta = 1e-4\n")
    result = runner.invoke(app, ["client", "status", "--site-config", str(path)])
    assert result.exit_code == 2 and "total-epsilon" in result.output  # refused when site.toml is read
