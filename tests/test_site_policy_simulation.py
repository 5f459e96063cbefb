"""`medfed simulate` follows the same site rules as a deployment: virtual hospitals apply their
policy (from the run config's `site-policy`) in the same ClientApp code, and keep audit logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.privacy.audit import AuditLog
from simulations.simulate import build_config, run

pytestmark = pytest.mark.slow


def test_simulated_sites_refuse_what_their_policy_forbids_and_withhold_what_it_keeps(tmp_path: Path,
                                                                                     data_dir: Path) -> None:
    policy = {"*": {"mode": "sample-dp"}, "cleveland": {"allow-modes": ["sample-dp", "none"], "mode": "none",
                                                        "release-evaluation": False}}
    cfg = build_config({
        "dataset": "heart-disease", "partition": "natural", "num-rounds": 1, "local-epochs": 1,
        "privacy-mode": "none", "min-sites": 2, "site-policy": json.dumps(policy), "out-dir": str(tmp_path / "run"),
    })
    result = run(cfg, data_dir=str(data_dir))
    round1 = result.metrics["rounds"][1]
    assert {s for s, m in round1["sites"].items() if m.get("num_train_examples", 0) > 0} == {"cleveland"}
    for site in ("hungary", "switzerland", "va"):
        assert result.privacy["sites"][site]["status"] == "refused by site policy"
        assert any(e.startswith(f"site {site} refused to train: This site's policy does not allow") for e in round1["events"])
    assert "evaluation_withheld" in round1["sites"]["cleveland"] and "auc" not in round1["sites"]["cleveland"]
    assert "train_loss" in round1["sites"]["cleveland"]  # without DP the site's policy releases it
    for site in ("cleveland", "hungary", "switzerland", "va"):
        log = AuditLog(result.out_dir / "sites" / site / "audit.jsonl")
        assert log.verify().ok
        decisions = {r["decision"] for r in log.records()}
        assert decisions >= ({"trained", "withheld"} if site == "cleveland" else {"refused", "withheld"})
    assert (result.out_dir / "report.html").exists()


def test_a_private_simulation_releases_no_training_loss_and_audits_every_request(tmp_path: Path,
                                                                                 data_dir: Path) -> None:
    cfg = build_config({"dataset": "heart-disease", "partition": "natural", "num-rounds": 1, "local-epochs": 1,
                        "out-dir": str(tmp_path / "run")})
    result = run(cfg, data_dir=str(data_dir))
    round1 = result.metrics["rounds"][1]
    assert all(m["num_train_examples"] > 0 and "train_loss" not in m for m in round1["sites"].values())
    log = AuditLog(result.out_dir / "sites" / "hungary" / "audit.jsonl")
    records = log.records()
    # SecAgg+: setup, share keys, masked vector (the training), unmask; then the validation
    # counts for the operating point (heart disease has no operator validation split), then the evaluation
    assert [r["message_type"] for r in records] == ["train:setup", "train:share_keys", "train:collect_masked_vectors",
                                                    "train:unmask", "evaluate:validation", "evaluate"]
    trained = records[2]
    assert trained["decision"] == "trained" and trained["epsilon_run_before"] == 0.0
    assert 0 < trained["epsilon_run_after"] <= cfg.privacy.epsilon and trained["epsilon_total_after"] > 0
    assert trained["released"]["bytes"] > 0 and not any("train_loss" in item for item in trained["released"]["items"])
