"""The Ray engine under `medfed simulate`: loopback only, a quiet console, clear errors.

The socket check is taken from inside the run (a recorder listener, called in the driver while
Ray and the hospitals' workers are up), so it waits on the run's own events, not on sleeps.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import pytest

from common.errors import ConfigError
from simulations.engine_log import ENGINE_LOG, engine_log
from simulations.ray_engine import EngineSettings
from simulations.simulate import build_config, run
from tests.listening import tree_listeners


def _tiny(out: Path, **extra: object):
    return build_config({"dataset": "heart-disease", "partition": "iid", "num-sites": 3, "num-rounds": 1,
                         "local-epochs": 1, "out-dir": str(out), **extra})


@pytest.mark.slow
def test_a_simulation_listens_on_loopback_only_is_quiet_and_its_folder_logs_to_mlflow(
    tmp_path: Path, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    seen: list = []

    def probe(kind: str, payload: dict) -> None:
        if kind == "fit_done":  # Ray, its agents and the hospitals' workers are all up now
            seen.extend(tree_listeners())

    result = run(_tiny(tmp_path / "run"), listeners=[probe])
    names = {s.name for s in seen}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), names
    assert any(n.startswith("ray::") for n in names), f"no Ray worker socket seen: {names}"
    exposed = [s for s in seen if not s.loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert result.metrics["final"]["round"] == 1
    console = capfd.readouterr()
    text = console.out + console.err
    assert "deprecated" not in text and "FutureWarning" not in text, text[-3000:]
    log = (tmp_path / "run" / ENGINE_LOG).read_text()
    assert "deprecated" in log, "Flower's notice belongs in engine.log"
    assert "192.0.2" not in log and "0.0.0.0" not in log
    _log_the_real_folder_to_mlflow_and_rebuild_its_report(result.out_dir, tmp_path / "mlruns")


def _log_the_real_folder_to_mlflow_and_rebuild_its_report(out: Path, store: Path) -> None:
    """The same run folder (a second simulation would cost a minute): logged to a local MLflow
    store and read back with MLflow's client; its report rebuilt by `medfed report`."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from server.run_folder import regenerate_report
    from server.tracking import log_run_folder, tracking_target

    target = tracking_target(True, str(store))
    run_id = log_run_folder(out, target)
    client = MlflowClient(tracking_uri=target.uri)
    run = client.get_run(run_id)
    assert run.info.run_name == out.name and run.data.params["num-sites"] == "3"
    metrics = json.loads((out / "metrics.json").read_text())
    auc = metrics["final"]["global"]["auc"]
    assert [m.value for m in client.get_metric_history(run_id, "global/auc") if m.step == 1] == [pytest.approx(auc)]
    privacy = json.loads((out / "privacy.json").read_text())
    for site, entry in privacy["sites"].items():
        assert [m.value for m in client.get_metric_history(run_id, f"epsilon/{site}")] == [pytest.approx(entry["epsilon"]["1"])]
    assert {"report.html", "global_model.pt", "learning_curves.png"} <= {a.path for a in client.list_artifacts(run_id)}
    (out / "report.html").unlink()
    assert regenerate_report(out).exists()


def test_engine_notices_reach_the_console_only_with_verbose_and_errors_always(tmp_path: Path) -> None:
    flwr_log = logging.getLogger("flwr")
    console = io.StringIO()
    handler = logging.StreamHandler(console)  # stands for Flower's console handler
    flwr_log.addHandler(handler)
    try:
        with engine_log(tmp_path / "quiet", verbose=False) as path:
            flwr_log.warning("NOTICE-QUIET")
            flwr_log.error("ERROR-QUIET")
            warnings.warn("RAY-TIP", FutureWarning)
        shown = console.getvalue()
        assert "NOTICE-QUIET" not in shown and "ERROR-QUIET" in shown
        logged = path.read_text()
        assert "NOTICE-QUIET" in logged and "ERROR-QUIET" in logged and "RAY-TIP" in logged
        with engine_log(tmp_path / "loud", verbose=True):
            flwr_log.warning("NOTICE-LOUD")
        assert "NOTICE-LOUD" in console.getvalue()
        flwr_log.warning("AFTER")
        assert "AFTER" in console.getvalue(), "the console handler is restored after the block"
    finally:
        flwr_log.removeHandler(handler)


def test_too_few_cpus_for_one_hospital_is_refused_before_any_site_trains(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        run(_tiny(tmp_path / "run"), engine=EngineSettings(cpus_per_site=4096))
    assert "--cpus-per-site" in err.value.message and "lower" in err.value.fix
    assert not (tmp_path / "run" / "metrics.json").exists(), "no round may have started"


def test_an_unreachable_ray_address_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    from client.daemon.supervisor import free_port

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError) as err:
        run(_tiny(tmp_path / "run"), engine=EngineSettings(address=address))
    assert address in err.value.message and "--ray-address" in err.value.message
    assert "ray status" in err.value.fix
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_engine_settings_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="cpus-per-site"):
        EngineSettings(cpus_per_site=0)
    with pytest.raises(ConfigError, match="gpus-per-site"):
        EngineSettings(gpus_per_site=-1)
    with pytest.raises(ConfigError, match="ray-address"):
        EngineSettings(address=" ")


def test_the_command_line_reports_a_wrong_ray_address_and_trains_nothing(tmp_path: Path, data_dir: Path) -> None:
    from typer.testing import CliRunner

    from client.daemon.supervisor import free_port
    from simulations.cli.main import app

    address = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["simulate", "--dataset", "heart-disease", "--rounds", "1", "--ray-address", address,
                                      "--cpus-per-site", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and f"--ray-address {address}" in result.output, result.output
    assert not (tmp_path / "run" / "metrics.json").exists()
    bad = CliRunner().invoke(app, ["simulate", "--dataset", "heart-disease", "--cpus-per-site", "0", "--out", str(tmp_path / "r2")])
    assert bad.exit_code != 0 and "--cpus-per-site must be positive" in bad.output, bad.output
