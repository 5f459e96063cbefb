"""`medfed report`: one folder's report rebuilt from its files; two folders compared side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.config import RunConfig
from server.compare_report import config_differences, mean_interval
from server.run_folder import read_run_folder
from simulations.cli.main import app


def _folder(out: Path, *, mode: str, eps: float | None, auc: float, lr: float) -> Path:
    out.mkdir(parents=True)
    sites = {"a": {"auc": auc - 0.05, "accuracy": 0.7}, "b": {"auc": auc + 0.05, "accuracy": 0.8}}
    rounds = [{"round": 1, "global": {"auc": auc, "accuracy": 0.75, "loss": 0.5}, "federated": {}, "sites": sites,
               "events": [], "duration_s": 1.0}]
    config = RunConfig.from_flower(RunConfig().to_flower() | {"privacy-mode": mode, "num-rounds": 1}).to_dict()
    (out / "metrics.json").write_text(json.dumps({"config": config, "rounds": rounds, "final": rounds[0]}))
    privacy_sites = {s: {"epsilon": {"1": eps} if eps is not None else {}, "delta": None, "budget": None, "status": "ok"}
                     for s in sites}
    (out / "privacy.json").write_text(json.dumps({"privacy_mode": mode, "sites": privacy_sites,
                                                   "secure_aggregation": {"protocol": "secagg+"}}))
    (out / "run-config.json").write_text(json.dumps({"privacy-mode": mode, "learning-rate": lr, "num-rounds": 1,
                                                     "delta": 1e-4, "out-dir": str(out)}))
    (out / "global_model.json").write_text(json.dumps({"model": "mlp", "num_parameters": 10}))
    return out


def test_one_folder_gets_its_report_rebuilt_from_its_files(tmp_path: Path) -> None:
    run = _folder(tmp_path / "dp", mode="sample-dp", eps=3.25, auc=0.8, lr=0.5)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "3.25" in page and (run / "learning_curves.png").exists() and (run / "epsilon_per_site.png").exists()


def test_two_folders_are_compared_side_by_side(tmp_path: Path) -> None:
    dp = _folder(tmp_path / "dp", mode="sample-dp", eps=3.25, auc=0.8, lr=0.5)
    plain = _folder(tmp_path / "plain", mode="none", eps=None, auc=0.9, lr=0.05)
    out = tmp_path / "cmp.html"
    result = CliRunner().invoke(app, ["report", str(dp), str(plain), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    differ_section = page.split("Settings that differ")[1].split("Shared by all")[0]
    assert "privacy-mode" in differ_section and "learning-rate" in differ_section
    assert "num-rounds" not in differ_section and "out-dir" not in differ_section
    assert "delta=0.0001" in page, "settings are shown as written, not rounded"
    assert "NO differential privacy" in page and "3.25" in page
    assert "0.800 [" in page and "0.900 [" in page  # hospitals' mean with its interval


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "empty"), str(tmp_path / "empty")])
    assert result.exit_code != 0 and "metrics.json is missing" in result.output


def test_differences_and_intervals(tmp_path: Path) -> None:
    a = read_run_folder(_folder(tmp_path / "a", mode="sample-dp", eps=1.0, auc=0.8, lr=0.5))
    b = read_run_folder(_folder(tmp_path / "b", mode="sample-dp", eps=1.0, auc=0.8, lr=0.05))
    differ, same = config_differences([a, b])
    assert differ == {"learning-rate": [0.5, 0.05]} and same["privacy-mode"] == "sample-dp"
    assert "out-dir" not in same
    mean, low, high = mean_interval([0.7, 0.9], (0.0, 1.0))
    assert mean == pytest.approx(0.8) and low == 0.0 and high == 1.0  # 2 values: t(0.975, 1) = 12.7
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert (mean, round(low, 3), round(high, 3)) == (2.0, -0.484, 4.484)
    assert mean_interval([]) is None
