"""MLflow tracking (server/tracking.py): a run folder logged to a local store and read back with
MLflow's own client; an unwritable store is refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import ConfigError
from server.tracking import TrackingTarget, check_store, log_run_folder, tracking_target

mlflow = pytest.importorskip("mlflow", reason="the medfed[mlflow] extra (in the test extra)")


def _run_folder(out: Path) -> Path:
    out.mkdir(parents=True)
    rounds = [
        {"round": r, "global": {"auc": 0.6 + 0.1 * r, "loss": 1.0 / r},
         "federated": {"accuracy": 0.5 + 0.1 * r, "num_examples": 40},
         "sites": {"site-1": {"auc": 0.7, "epsilon": 2.0 * r}, "site 2": {"auc": 0.8}}}
        for r in (1, 2)
    ]
    (out / "metrics.json").write_text(json.dumps({"config": {}, "rounds": rounds, "final": rounds[-1]}))
    (out / "privacy.json").write_text(json.dumps({"privacy_mode": "sample-dp", "sites": {
        "site-1": {"epsilon": {"1": 2.0, "2": 4.0}}, "site 2": {"epsilon": {"1": 1.5, "2": 3.0}}}}))
    (out / "run-config.json").write_text(json.dumps({"num-rounds": 2, "epsilon": 8.0, "privacy-mode": "sample-dp"}))
    (out / "report.html").write_text("<html>report</html>")
    (out / "learning_curves.png").write_bytes(b"\x89PNG")
    return out


def test_a_run_folder_is_logged_and_read_back_with_mlflows_client(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = _run_folder(tmp_path / "sim-20260101-000000")
    target = tracking_target(False, str(tmp_path / "mlruns"))
    assert target is not None and target.uri.startswith("file:")
    run_id = log_run_folder(out, target)
    client = MlflowClient(tracking_uri=target.uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "sim-20260101-000000" and run.info.status == "FINISHED"
    assert run.data.params == {"num-rounds": "2", "epsilon": "8.0", "privacy-mode": "sample-dp"}
    history = {m.step: m.value for m in client.get_metric_history(run_id, "global/auc")}
    assert history == pytest.approx({1: 0.7, 2: 0.8})
    assert {m.step: m.value for m in client.get_metric_history(run_id, "epsilon/site-1")} == {1: 2.0, 2: 4.0}
    assert {m.step for m in client.get_metric_history(run_id, "epsilon/site 2")} == {1, 2}
    assert [m.value for m in client.get_metric_history(run_id, "site/site-1/auc")] == [0.7, 0.7]
    assert client.get_metric_history(run_id, "federated/num_examples")[0].value == 40
    artefacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "metrics.json", "privacy.json", "learning_curves.png"} <= artefacts


def test_tracking_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_target(False) is None
    assert tracking_target(True) is not None and tracking_target(True).uri.endswith("runs/mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_target(False) == TrackingTarget("http://127.0.0.1:5000")


def test_an_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        check_store(TrackingTarget((blocker / "mlruns").as_uri()))
    assert "MLflow tracking store" in err.value.message and "--mlflow-uri" in err.value.fix


def test_simulate_checks_the_store_before_any_hospital_trains(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simulations.cli.main import app

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["simulate", "--dataset", "heart-disease", "--rounds", "1",
                                      "--out", str(tmp_path / "run"), "--mlflow-uri", str(blocker / "mlruns")])
    assert result.exit_code != 0 and "MLflow tracking store" in result.output, result.output
    assert not (tmp_path / "run").exists(), "nothing may have run"
