"""`flwr run .` runs the same medfed app, and `--run-config` overrides reach it.

A SuperLink in simulation mode is started as a bounded OS process on 127.0.0.1 (own FLWR_HOME);
`flwr run . <connection> --run-config ...` submits the app from the repository root.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.daemon.supervisor import free_port
from common.ops.supervise import flower_env
from tests.procs import ProcessGroup, flwr_run, wait_for_port, wait_for_run

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


def test_flwr_run_with_run_config_overrides(tmp_path: Path, data_dir: Path) -> None:
    flwr_home = tmp_path / "flwr-home"
    env = flower_env(flwr_home)
    env["MEDFED_DATA_DIR"] = str(data_dir)
    port = free_port()
    (flwr_home / "config.toml").write_text(
        "[superlink]\n"
        'default = "medfed-test"\n'
        "[superlink.medfed-test]\n"
        f'address = "127.0.0.1:{port}"\n'
        "insecure = true\n"
        "options.num-supernodes = 4\n"
    )
    out = tmp_path / "run"
    with ProcessGroup(tmp_path / "logs", default_lifetime=420) as procs:
        link = procs.start(
            [
                "flower-superlink", "--simulation", "--insecure", "--disable-runtime-dependency-installation",
                "--host", "127.0.0.1", "--port", str(port), "--database", str(tmp_path / "state.db"),
            ],
            name="superlink",
            env=env,
            cwd=tmp_path,
            stop_last=True,
        )
        wait_for_port("127.0.0.1", port, timeout=60, proc=link)
        overrides = {
            "dataset": "heart-disease",
            "partition": "natural",
            "num-rounds": 2,
            "local-epochs": 1,
            "epsilon": 4.0,
            "strategy": "fedadam",
            "secagg": False,
            "out-dir": str(out),
        }
        run_id = flwr_run(REPO, "medfed-test", env=env, run_config=overrides, timeout=120)
        record = wait_for_run("medfed-test", run_id, env=env, timeout=360, watch=[link])
        assert record["status"] == "finished:completed", procs.logs()
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = metrics["config"]
    assert cfg["federation"]["num_rounds"] == 2 and cfg["training"]["local_epochs"] == 1
    assert cfg["privacy"]["epsilon"] == 4.0 and cfg["data"]["dataset"] == "heart-disease"
    assert cfg["federation"]["strategy"] == "fedadam" and cfg["secagg"]["enabled"] is False
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    privacy = json.loads((out / "privacy.json").read_text())
    assert all(max(e["epsilon"].values()) <= 4.0 + 1e-6 for e in privacy["sites"].values())
    assert privacy["secure_aggregation"] == {"enabled": False}
    assert all(r["fit"]["sites"] == 4 for r in metrics["rounds"][1:]), "plain (unmasked) fit path aggregates every site"
    assert "OFF (explicitly requested)" in (out / "report.html").read_text()
