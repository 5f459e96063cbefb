"""The benchmark scripts still run: each one's --quick smoke mode, end to end.

Benchmarks are not timed tests (their numbers live in docs/BENCHMARKS.md); these only check
that every script runs against the real code, exits 0, prints its RATIO line and writes a
well-formed result file. Results go to a temporary folder, never over the committed ones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import _bench  # noqa: E402


def _run_quick(script: str, out: Path, data_dir: Path, *extra: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "MEDFED_DATA_DIR": str(data_dir)},
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert out.is_file(), f"{script} wrote no result file"
    return proc.stdout


@pytest.mark.slow
def test_dp_overhead_quick(tmp_path: Path, data_dir: Path) -> None:
    out = _run_quick("dp_overhead.py", tmp_path / "dp.json", data_dir)
    assert "RATIO dp_overhead cnn" in out and "RATIO dp_overhead gru" in out and "RATIO dp_overhead mlp" in out
    result = json.loads((tmp_path / "dp.json").read_text())
    for entry in result["results"]:
        for v in ("hooks", "ghost"):
            assert entry["loop_slowdown_vs_non_private"][v] > 0


@pytest.mark.slow
def test_secagg_overhead_quick(tmp_path: Path, data_dir: Path) -> None:
    out = _run_quick("secagg_overhead.py", tmp_path / "secagg.json", data_dir)
    assert "RATIO secagg_overhead n=4 0.1M" in out and "RATIO secagg_overhead growth 0.1M" in out
    grid = json.loads((tmp_path / "secagg.json").read_text())["grid"]
    cell = next(c for c in grid["cells"] if c["n"] == 4)
    # a SecAgg+ hospital sends its masked vector as int64: about twice the float32 plain update
    sent = cell["bytes"]["secagg"]["sent_per_hospital"] / cell["bytes"]["plain"]["sent_per_hospital"]
    assert 1.8 < sent < 2.3, sent


@pytest.mark.slow
def test_scaling_quick(tmp_path: Path, data_dir: Path) -> None:
    out = _run_quick("scaling.py", tmp_path / "scaling.json", data_dir)
    assert "RATIO scaling none" in out
    summary = json.loads((tmp_path / "scaling.json").read_text())["summary"]["none"]
    assert all(v["peak_rss_gib"] > 0.1 for v in summary["per_n"].values()), "process-tree memory was not sampled"


@pytest.mark.slow
def test_accuracy_quick(tmp_path: Path, data_dir: Path) -> None:
    out = _run_quick("accuracy.py", tmp_path / "accuracy.json", data_dir)
    assert "RATIO accuracy quick" in out
    run = json.loads((tmp_path / "accuracy.json").read_text())["runs"][0]
    assert run["cell"] == "heart-fedavg-eps5" and run["rounds"] == 1
    # One private round already learns: an untrained (or random) model has AUC 0.5 whatever the
    # class balance, so this fails if training, aggregation or evaluation silently did nothing.
    assert run["auc"] > 0.6, run
    assert 0.0 < run["epsilon_spent_max"] <= 5.0 + 1e-6, run  # privacy was spent, within budget


# -- the helpers every speed figure goes through (fast) -----------------------------------------


def test_loglog_slope_recovers_exponents() -> None:
    ns = [4, 8, 16, 32]
    assert _bench.loglog_slope(ns, [3 * n**2 for n in ns]) == pytest.approx(2.0)
    assert _bench.loglog_slope(ns, [0.5 * n for n in ns]) == pytest.approx(1.0)
    assert 1.0 < _bench.nlogn_slope(ns) < 1.6
    assert math.isnan(_bench.loglog_slope([4], [1.0]))


def test_paired_ratio_pairs_repetitions() -> None:
    # a load spike in repetition 2 hits both variants: the paired ratio stays 2
    assert _bench.paired_ratio([2.0, 20.0, 2.2], [1.0, 10.0, 1.1]) == pytest.approx(2.0)


def test_interleaved_rotates_order_and_counts() -> None:
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name) or 1.0) for name in ("a", "b", "c")}
    out = _bench.interleaved(variants, reps=3, warmup=1)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert out == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}


def test_accuracy_summary_keeps_recipes_apart() -> None:
    import accuracy

    cell = next(c for c in accuracy.all_cells() if c.name == "pneumonia-dirichlet1-eps8")
    runs = [{"cell": cell.name, "seed": 0, "auc": 0.9, "overrides": {}},
            {"cell": cell.name, "seed": 0, "auc": 0.97, "overrides": {"augmentation": "affine"}}]
    summary = accuracy.summarise(runs, [cell])
    assert [(e["recipe"], e["auc"]["mean"]) for e in summary] == [("", 0.9), ("augmentation=affine", 0.97)]
    assert summary[1]["targets"][0] == {"target": "AUC >= 0.96", "mean": 0.97, "met": True, "by": pytest.approx(0.01)}


def test_keep_rounds_copies_each_rounds_checkpoint(tmp_path: Path) -> None:
    """accuracy.py --keep-rounds: at every round's end the run's checkpoint (written before the
    announcement) is copied to round<r>.npz beside the run config, which ema_replay.py reads."""
    import numpy as np

    import accuracy
    from simulations.simulate import build_config

    run = tmp_path / "run"
    run.mkdir()
    cfg = build_config({"out-dir": str(run), "seed": 3})
    keep = accuracy._round_keeper(cfg, tmp_path / "kept")
    for rnd in (0, 1, 2):
        np.savez(run / "checkpoint.npz", w0=np.full(2, float(rnd)))
        keep("round_end", {"round": rnd})
    keep("fit_done", {"round": 2})
    kept = sorted(p.name for p in (tmp_path / "kept").glob("round*.npz"))
    assert kept == ["round1.npz", "round2.npz"], "round 0 is the untrained model, not an aggregate"
    assert float(np.load(tmp_path / "kept" / "round2.npz")["w0"][0]) == 2.0
    assert json.loads((tmp_path / "kept" / "run-config.json").read_text())["seed"] == 3
