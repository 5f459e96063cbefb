"""Following a run: one readable line per round, and a clear error when the SuperLink is gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import FederationError
from server.deploy.run_follower import round_line


def test_round_line_shows_metrics_epsilon_and_events() -> None:
    record = {"round": 2, "global": {"auc": 0.81234, "accuracy": 0.7}, "global_source": "federated",
              "fit": {"sites": 3}, "sites": {"a": {"num_train_examples": 50}, "b": {"num_train_examples": 40}, "c": {"num_train_examples": 0}},
              "events": ["site c refused to train: budget"], "duration_s": 61.2}
    privacy = {"sites": {"a": {"epsilon": {"2": 3.5}, "budget": 5.0, "status": "ok"},
                         "c": {"epsilon": {}, "budget": 5.0, "status": "budget exhausted"}}}
    lines = round_line(record, privacy, 3)
    assert lines[0].startswith("round 2/3: AUC 0.812  accuracy 0.700")
    assert "3 replied, 2 trained" in lines[0] and "a 3.50/5.0" in lines[0] and "c budget exhausted" in lines[0]
    assert lines[1] == "  event: site c refused to train: budget"


def test_follower_gives_up_with_a_resume_hint_when_the_superlink_is_gone(tmp_path: Path, monkeypatch) -> None:
    """A server that dies mid-run must not leave the operator's terminal waiting in silence."""
    from server.deploy import run_follower
    from server.deploy.flwr_cli import FlwrResult

    calls: list[int] = []
    monkeypatch.setattr(run_follower, "FILE_POLL_S", 0.01)
    monkeypatch.setattr(run_follower, "LOST_RETRY_S", 0.05)
    monkeypatch.setattr(run_follower, "LOST_AFTER_S", 0.3)

    def refused(*args, **kwargs):
        calls.append(1)
        return FlwrResult(success=False, **{"error-message": "connection refused"})

    monkeypatch.setattr(run_follower, "flwr_json", refused)
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": [{"round": 0}, {"round": 1}]}))
    follower = run_follower.RunFollower(run_id=7, out_dir=tmp_path, env={}, num_rounds=3, echo=lambda line: None,
                                    run_name="heart-x")
    with pytest.raises(FederationError) as err:
        follower.follow()
    assert "Lost contact with the SuperLink" in err.value.problem and "connection refused" in err.value.problem
    assert "rounds up to 1 are recorded" in err.value.problem
    assert "--name heart-x" in err.value.fix and "resumes" in err.value.fix
    assert 3 <= len(calls) <= 12  # retried for LOST_AFTER_S, not forever, not once
