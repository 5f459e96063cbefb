"""server/records.py: the run recorder's documents are what it writes, and its listeners."""

from __future__ import annotations

import json
from pathlib import Path

from server.records import RunRecorder


def test_recorder_documents_are_what_it_writes_and_listeners_are_passed_in(tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    recorder = RunRecorder(tmp_path, config={"k": 1}, privacy_mode="sample-dp", site_names=["a"], secure_aggregation={},
                           listeners=[lambda kind, payload: events.append((kind, payload))])
    recorder.start_round(1)
    recorder.on_fit_results(1, [(10, {"site": "a", "epsilon": 0.5, "delta": 1e-4, "epsilon_budget": 8.0})], [])
    recorder.end_round(1, weights=None, optimizer_state=None)
    assert recorder.metrics_document() == json.loads((tmp_path / "metrics.json").read_text())
    assert recorder.privacy_document() == json.loads((tmp_path / "privacy.json").read_text())
    recorder.finished({"report": tmp_path / "report.html"})
    assert [kind for kind, _ in events] == ["round_start", "fit_done", "round_end", "finished"]
    assert events[-1][1] == {"out_dir": str(tmp_path), "files": {"report": str(tmp_path / "report.html")}}
