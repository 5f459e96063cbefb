"""Checks before the client daemon starts: the site's data is valid, and only one daemon runs per state-dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from client.daemon import preflight, supervisor as daemon
from client.daemon.site_config import load_site_config
from common.errors import ConfigError, DataError
from tests.deploy_files import app, pki_dir, runner, site_toml  # noqa: F401 - pki_dir is a fixture


def _table(path: Path, labels: list[int]) -> Path:
    rng = np.random.default_rng(0)
    n = len(labels)
    pd.DataFrame({"age": rng.integers(30, 80, n), "bp": rng.normal(130, 15, n), "label": labels}).to_csv(path, index=False)
    return path


def test_data_is_validated_before_anything_starts(tmp_path: Path, pki_dir: Path, data_dir: Path, monkeypatch) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    _, summary = preflight.validate_data(cfg)
    assert "site cleveland: 199 training rows" in summary
    with pytest.raises(DataError, match="'bern' is not part of heart-disease"):
        preflight.validate_data(load_site_config(site_toml(tmp_path, pki_dir, data='dataset = "heart-disease"\nsite = "bern"\n')))

    good = _table(tmp_path / "ward.csv", [i % 2 for i in range(40)])
    cfg = load_site_config(site_toml(tmp_path, pki_dir, data=f'path = "{good}"\n'))
    resolved, summary = preflight.validate_data(cfg)
    assert resolved.data_format == "table" and resolved.node_config()["data-format"] == "table"
    assert resolved.node_config()["data-path"] == str(good)

    bad = _table(tmp_path / "one-class.csv", [1] * 40)
    path = site_toml(tmp_path, pki_dir, data=f'path = "{bad}"\nformat = "table"\n')
    monkeypatch.setattr(daemon.Supervisor, "run", lambda self: pytest.fail("started despite bad data"))
    result = runner.invoke(app, ["client", "start", "--site-config", str(path)])
    assert result.exit_code == 3, result.output
    assert "only class" in result.output or "single class" in result.output
    assert not (tmp_path / "state" / "medfed-client.pid").exists()  # released on the way out
    assert "error:" in (tmp_path / "state" / "logs" / "client.log").read_text()


def test_pid_file_refuses_a_second_daemon(tmp_path: Path) -> None:
    pid_file = tmp_path / "medfed-client.pid"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "client", "start"])
    try:
        time.sleep(0.2)
        pid_file.write_text(f"{other.pid}\n")
        with pytest.raises(ConfigError, match=f"already running \\(pid {other.pid}"):
            preflight.acquire_pid_file(pid_file)
    finally:
        other.kill()
        other.wait()
    preflight.acquire_pid_file(pid_file)  # the old process is gone: a stale file is taken over
    assert preflight.read_pid(pid_file) == os.getpid()
    preflight.release_pid_file(pid_file)
    assert not pid_file.exists()
