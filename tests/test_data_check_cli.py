"""`medfed data check`: JSON and human output, exit codes, format inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from simulations.cli.data import data_app
from common.errors import ConfigError, DataError

app = typer.Typer()
app.add_typer(data_app, name="data")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["data", "check", *map(str, args)])


@pytest.fixture
def good_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"age": rng.integers(30, 80, 50), "bp": rng.normal(130, 15, 50), "label": [i % 2 for i in range(50)]}
    )
    path = tmp_path / "ward7.csv"
    df.to_csv(path, index=False)
    return path


def test_json_good_table(good_csv):
    result = run("--path", good_csv, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert out["valid"] is True and out["problems"] == []
    site = out["sites"]["ward7"]
    # 10 % of the training rows are the site's validation split (the operating point is chosen on it)
    assert (site["train"], site["val"], site["test"]) == (36, 4, 10)
    assert site["class_counts"] == {"train": [18, 18], "val": [2, 2], "test": [5, 5]}
    assert out["input_shape"] == [2] and out["modality"] == "tabular"


def test_human_output_names_site_and_counts(good_csv):
    result = run("--path", good_csv, "--format", "table", "--site-name", "st-marys")
    assert result.exit_code == 0, result.output
    assert "st-marys" in result.stdout and "train" in result.stdout and "36" in result.stdout and "val" in result.stdout
    assert "valid" in result.stdout


def test_bad_data_exit_code_and_message(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("age,label\n50,0\n,1\n60,0\n70,1\n")
    result = run("--path", path)
    assert result.exit_code == DataError.exit_code
    assert "broken.csv" in result.stderr and "How to fix" in result.stderr
    assert "Traceback" not in result.output


def test_bad_data_json_still_one_object(tmp_path):
    path = tmp_path / "one_class.csv"
    path.write_text("age,label\n" + "".join(f"{50 + i},1\n" for i in range(10)))
    result = run("--path", path, "--json")
    assert result.exit_code == DataError.exit_code
    out = json.loads(result.stdout)
    assert out["valid"] is False and out["sites"] == {}
    assert "only class '1' present" in out["problems"][0] and "one_class.csv" in out["problems"][0]


def test_ucr_and_wfdb_inferred(data_dir):
    result = run("--path", data_dir / "ecg5000-train" / "ECG5000_TRAIN.txt", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    site = out["sites"]["ECG5000_TRAIN"]
    assert site["train"] + site["val"] + site["test"] == 500
    result = run("--path", data_dir / "mitbih-100")
    assert result.exit_code == 0, result.output
    assert "mitbih-100" in result.stdout and "N:" in result.stdout


def test_ambiguous_or_missing_choice_asks_for_format(tmp_path, good_csv):
    (tmp_path / "a.dcm").write_bytes(b"")
    (tmp_path / "a.hea").write_text("")
    result = run("--path", tmp_path)
    assert result.exit_code == ConfigError.exit_code and "--format" in result.stderr
    result = run()
    assert result.exit_code == ConfigError.exit_code and "--dataset" in result.stderr
    result = run("--path", good_csv, "--dataset", "ecg5000")
    assert result.exit_code == ConfigError.exit_code


def test_builtin_dataset_partitioned(data_dir):
    result = run("--dataset", "ecg5000", "--sites", "3", "--partition", "iid", "--data-dir", data_dir, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(out["sites"]) == ["site-0", "site-1", "site-2"] and out["valid"] is True
    for site in out["sites"].values():
        assert site["train"] > 0 and site["test"] > 0 and len(site["class_counts"]["train"]) == 5


def test_builtin_single_class_site_is_a_warning_not_a_failure(data_dir):
    """Fed-Heart-Disease's Switzerland trains on positives only; a federation can still use it."""
    result = run("--dataset", "heart-disease", "--data-dir", data_dir, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["valid"] is True and any("switzerland" in w for w in out["warnings"])
    human = run("--dataset", "heart-disease", "--data-dir", data_dir)
    assert "switzerland" in human.stdout and "warning" in human.stdout


def test_unknown_builtin_dataset(data_dir):
    result = run("--dataset", "no-such-data", "--data-dir", data_dir, "--json")
    assert result.exit_code != 0
    assert json.loads(result.stdout)["valid"] is False
