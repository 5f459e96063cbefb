"""A server (here: the simulation process) killed mid-run resumes from the last completed round.

The run is killed with SIGKILL (no chance to clean up) once round 2 is checkpointed; the same
command is run again. It must resume from the checkpoint, finish, record every round exactly
once, and the sites' privacy ledgers must never under-count (epsilon never above the budget,
and never lower after the restart than before it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.procs import ProcessGroup, wait_until

pytestmark = pytest.mark.slow


def _command(out: Path, data_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "simulations.cli", "simulate", "--dataset", "heart-disease", "--rounds", "4",
        "--local-epochs", "1", "--epsilon", "5", "--out", str(out), "--data-dir", str(data_dir),
    ]


def _ledger_epsilons(out: Path) -> dict[str, float]:
    from client.privacy.ledger import PrivacyLedger

    return {
        path.parent.name: max((s["spent"] for s in PrivacyLedger(path).summary().values()), default=0.0)
        for path in (out / "sites").glob("*/privacy-ledger.json")
    }


def test_killed_run_resumes_from_last_completed_round(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    with ProcessGroup(tmp_path / "logs", default_lifetime=400) as procs:
        first = procs.start(_command(out, data_dir), name="first")
        ckpt = out / "checkpoint.json"
        wait_until(lambda: ckpt.exists() and json.loads(ckpt.read_text())["round"] >= 2,
                   "round 2's checkpoint", timeout=300, procs=[first], interval=0.5)
        first.kill()  # crash: no cleanup, no final outputs
        before = _ledger_epsilons(out)
        assert not (out / "global_model.pt").exists()
        killed_at = json.loads((out / "checkpoint.json").read_text())["round"]

        second = procs.start(_command(out, data_dir), name="second")
        assert second.wait(timeout=360) == 0, second.tail(80)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2, 3, 4], "every round exactly once"
    resumed = metrics["rounds"][killed_at + 1]
    assert any("resuming from round" in e for e in resumed["events"]), resumed["events"]
    assert (out / "report.html").exists() and (out / "global_model.pt").exists()
    after = _ledger_epsilons(out)
    for site, eps in after.items():
        assert eps <= 5.0 + 1e-6, f"{site} spent {eps} > budget"
        assert eps >= before.get(site, 0.0), f"{site}'s ledger went backwards after the restart"
    privacy = json.loads((out / "privacy.json").read_text())
    for site, entry in privacy["sites"].items():
        rounds = sorted(int(r) for r in entry["epsilon"])
        assert rounds == sorted(set(rounds))
