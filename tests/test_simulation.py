"""Real Flower simulations (Ray) of medfed: learning improves, and every output is written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.config import RunConfig
from simulations.simulate import build_config, run

pytestmark = pytest.mark.slow

EXPECTED_FILES = [
    "metrics.json",
    "metrics.csv",
    "privacy.json",
    "global_model.pt",
    "global_model.json",
    "learning_curves.png",
    "roc_curve.png",
    "calibration.png",
    "epsilon_per_site.png",
    "report.html",
]


def _check_outputs(out: Path, cfg: RunConfig) -> dict:
    for name in EXPECTED_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{name} missing or empty"
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png.name} is not a PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"config", "rounds", "final"}
    rounds = [r["round"] for r in metrics["rounds"]]
    assert rounds == list(range(0, cfg.federation.num_rounds + 1)), "every round exactly once (0 = untrained baseline)"
    for r in metrics["rounds"][1:]:
        assert set(r["sites"]) == set(metrics["rounds"][-1]["sites"]) and r["sites"], "per-site metrics every round"
        assert "auc" in r["global"] and "accuracy" in r["global"]
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["round"] for row in rows} == {str(r) for r in rounds}
    privacy = json.loads((out / "privacy.json").read_text())
    assert privacy["privacy_mode"] == cfg.privacy.mode
    assert privacy["secure_aggregation"]["protocol"].startswith("SecAgg+")
    for site, entry in privacy["sites"].items():
        eps = [entry["epsilon"][str(r)] for r in range(1, cfg.federation.num_rounds + 1)]
        assert eps == sorted(eps) and eps[0] > 0, f"{site}: epsilon must grow round by round"
        assert eps[-1] <= cfg.privacy.epsilon + 1e-6, f"{site}: epsilon {eps[-1]} exceeds the budget"
        assert entry["delta"] == cfg.privacy.delta
    meta = json.loads((out / "global_model.json").read_text())
    assert meta["round"] == cfg.federation.num_rounds
    assert meta["dataset_checksums"] and meta["library_versions"]["flwr"] == "1.41.0"
    state = torch.load(out / "global_model.pt")
    assert sum(v.numel() for v in state.values()) == meta["num_parameters"]
    point = metrics["final"]["operating_point"]
    assert meta["threshold"] == point["threshold"] and meta["temperature"] == point["temperature"] > 0
    assert meta["threshold_rule"] == cfg.evaluation.threshold_rule
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "SecAgg+" in html
    assert "At the chosen threshold" in html and "Model card" in html
    return metrics


def test_private_secure_federation_learns_and_writes_every_output(tmp_path: Path, data_dir: Path) -> None:
    cfg = build_config(
        {
            "dataset": "pneumoniamnist",
            "num-sites": 3,
            "partition": "iid",
            "local-epochs": 1,
            "num-rounds": 3,
            # Three short rounds: the default cosine decay for images (tuned for 20 rounds) would
            # halve the steps of rounds 2-3; this test is about a short run learning at all.
            "learning-rate-schedule": "constant",
            "epsilon": 8.0,
            "out-dir": str(tmp_path / "run"),
        }
    )
    result = run(cfg, data_dir=str(data_dir))
    metrics = _check_outputs(result.out_dir, cfg)
    baseline = metrics["rounds"][0]["global"]["auc"]
    final = metrics["final"]["global"]["auc"]
    assert final >= 0.65 and final >= baseline + 0.15, f"AUC did not improve enough: {baseline:.3f} -> {final:.3f}"
    # At the operating point chosen on the official validation split (not at 0.5), the model
    # must be usable for both classes: balanced accuracy, not just ranking. (Three short rounds
    # reach AUC ~0.71 here, which caps balanced accuracy near 0.67; seed 0 gives 0.65.)
    point = metrics["final"]["operating_point"]
    assert point["source"] == "central validation" and point["validation_n"] == 524
    g = metrics["final"]["global"]
    assert g["balanced_accuracy"] >= 0.60, f"balanced accuracy {g['balanced_accuracy']:.3f} at threshold {point['threshold']:.2f}"
    assert g["balanced_accuracy"] >= metrics["rounds"][0]["global"]["balanced_accuracy"] + 0.1
    assert min(g["sensitivity"], g["specificity"]) >= 0.5, "the operating point must not call (almost) everything one class"
    low, high = metrics["final"]["global_details"]["intervals"]["balanced_accuracy"]
    assert low <= g["balanced_accuracy"] <= high
    assert sum(map(sum, metrics["final"]["global_details"]["confusion_matrix"])) == g["n"] == 624


def test_heart_disease_natural_hospitals_via_the_command(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "heart"
    proc = subprocess.run(
        [sys.executable, "-m", "simulations.cli", "simulate", "--dataset", "heart-disease", "--rounds", "2",
         "--out", str(out), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["final"]["sites"]) == {"cleveland", "hungary", "switzerland", "va"}
    assert metrics["config"]["data"]["partition"] == "natural"
    # Switzerland trains on positives only (FLamby's split puts its one negative in the test rows).
    assert metrics["final"]["sites"]["switzerland"]["num_test_examples"] == 16
    assert "Finished 2 rounds" in proc.stdout


def test_hospital_format_path_with_client_level_dp(tmp_path: Path, data_dir: Path) -> None:
    """A hospital's own UCR table, partitioned into 3 sites, with client-level DP (noise added by
    the server after SecAgg+, calibrated from the epsilon budget): runs, learns, and records it."""
    cfg = build_config(
        {
            "dataset": "",
            "data-path": str(data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt"),
            "data-format": "ucr",
            "num-sites": 3,
            "partition": "iid",
            "privacy-mode": "client-dp",
            "epsilon": 8.0,
            "num-rounds": 2,
            "out-dir": str(tmp_path / "ucr"),
        }
    )
    result = run(cfg, data_dir=str(data_dir))
    privacy = result.privacy
    assert privacy["privacy_mode"] == "client-dp"
    client_dp = privacy["client_level_dp"]
    assert client_dp["noise_multiplier"] > 0
    assert 0 < client_dp["epsilon_by_round"]["2"] <= 8.0 + 1e-6
    assert client_dp["epsilon_by_round"]["1"] < client_dp["epsilon_by_round"]["2"]
    assert result.metrics["config"]["training"]["model"] == "auto"
    meta = json.loads((result.out_dir / "global_model.json").read_text())
    assert meta["model"] == "gru" and meta["input_shape"] == [1, 140]
    assert "client-level" in (result.out_dir / "report.html").read_text()
    # With 3 sites, client-level DP noise (std z*C/3 per coordinate) swamps the update: medfed
    # must say so rather than let the user discover it in the accuracy.
    assert any("client-level DP with only 3 sites" in e for e in result.metrics["rounds"][0]["events"])
