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


def _notes(path: Path, n: int = 40) -> Path:
    words = ["chest pain and dyspnoea", "mass in the left lobe", "tremor and headache", "abdominal pain after meals"]
    pd.DataFrame({"note": [f"{words[i % 4]} visit {i}" for i in range(n)],
                  "dx": [["cardio", "onco", "neuro", "gastro"][i % 4] for i in range(n)]}).to_csv(path, index=False)
    return path


def test_site_toml_names_the_columns_of_a_text_table_and_preflight_reads_them(tmp_path: Path, pki_dir: Path) -> None:
    notes = _notes(tmp_path / "notes.csv")
    data = f'path = "{notes}"\nformat = "text-table"\ntext-column = "note"\nlabel-column = "dx"\n'
    cfg = load_site_config(site_toml(tmp_path, pki_dir, data=data))
    resolved, summary = preflight.validate_data(cfg)
    assert "training rows (classes" in summary and resolved.data_format == "text-table"
    node = resolved.node_config()
    assert node["text-column"] == "note" and node["label-column"] == "dx"
    # Without the site's column names the same file cannot be read: preflight says so before connecting.
    plain = load_site_config(site_toml(tmp_path, pki_dir, data=f'path = "{notes}"\nformat = "text-table"\n'))
    with pytest.raises(DataError, match="'text'"):
        preflight.validate_data(plain)


def test_site_toml_label_column_for_a_numeric_table(tmp_path: Path, pki_dir: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "ward.csv"
    pd.DataFrame({"age": rng.integers(30, 80, 40), "outcome": [i % 2 for i in range(40)]}).to_csv(path, index=False)
    cfg = load_site_config(site_toml(tmp_path, pki_dir, data=f'path = "{path}"\nlabel-column = "outcome"\n'))
    resolved, summary = preflight.validate_data(cfg)  # format inferred (table), label read from `outcome`
    assert resolved.data_format == "table" and "(classes " in summary
    with pytest.raises(DataError, match="'label'"):
        preflight.validate_data(load_site_config(site_toml(tmp_path, pki_dir, data=f'path = "{path}"\n')))


def test_column_keys_that_cannot_apply_are_refused(tmp_path: Path, pki_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_site_config(site_toml(tmp_path, pki_dir, data='dataset = "heart-disease"\nlabel-column = "num"\n'))
    assert "[data] label-column only applies to path" in err.value.message
    bad = 'path = "x.npz"\nformat = "npz"\nlabel-column = "y"\n'
    with pytest.raises(ConfigError, match=r"\[data\] label-column only applies to format table or text-table"):
        load_site_config(site_toml(tmp_path, pki_dir, data=bad))
    bad = 'path = "t.csv"\nformat = "table"\ntext-column = "note"\n'
    with pytest.raises(ConfigError, match=r'\[data\] text-column only applies to format text-table'):
        load_site_config(site_toml(tmp_path, pki_dir, data=bad))
    bad = 'path = "t.csv"\nformat = "text-table"\ntext-column = "note"\nlabel-column = "note"\n'
    with pytest.raises(ConfigError, match="both 'note'"):
        load_site_config(site_toml(tmp_path, pki_dir, data=bad))


def test_the_client_app_reads_the_site_table_with_the_sites_columns(tmp_path: Path, pki_dir: Path) -> None:
    from client.site import load_site_data, site_run
    from common.config import RunConfig

    notes = _notes(tmp_path / "notes.csv")
    data = f'path = "{notes}"\nformat = "text-table"\ntext-column = "note"\nlabel-column = "dx"\n'
    node = load_site_config(site_toml(tmp_path, pki_dir, data=data)).node_config()
    run_cfg = RunConfig.from_flower({"dataset": "medical-abstracts", "max-tokens": 32})  # the run names no columns
    settings = site_run(run_cfg, node, run_id=1)
    assert (settings.data.text_column, settings.data.label_column) == ("note", "dx")
    dataset, site = load_site_data(settings)
    assert dataset.modality == "text" and dataset.num_classes == 4 and dataset.input_shape == (32,)
    assert len(site.train) + len(site.test) + len(site.val or ()) == 40
