"""`medfed server run` pieces: run-config overrides, output folders and privacy scopes, the staged app."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import NON_PRIVATE_LEARNING_RATE
from common.errors import ConfigError
from server.deploy.settings import load_server_settings
from server.deploy.submit import build_run_config, choose_out_dir, parse_overrides, stage_app
from tests.deploy_files import pki_dir, server_toml  # noqa: F401 - pki_dir is a fixture


def test_run_config_overrides_names_and_out_dirs(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, extra='[run]\ndataset = "heart-disease"\npartition = "natural"\n'))
    assert parse_overrides(["num-rounds=3 model='mlp'"]) == {"num-rounds": 3, "model": "mlp"}
    with pytest.raises(ConfigError, match="manages itself"):
        parse_overrides(["out-dir='/tmp/x'"])
    stage = stage_app(tmp_path / "stage")
    from server.deploy.submit import app_defaults

    defaults = app_defaults(stage)
    out, note = choose_out_dir(cfg.runs_dir, "trial")
    assert out == cfg.runs_dir / "trial" and note == ""
    sent, run = build_run_config(cfg, name="trial", out_dir=out, overrides={"num-rounds": 2}, defaults=defaults)
    assert sent["run-name"] == "trial" and sent["out-dir"] == str(out) and sent["num-rounds"] == 2
    assert run.data.dataset == "heart-disease" and run.federation.num_rounds == 2
    with pytest.raises(ConfigError, match="epsilon"):
        build_run_config(cfg, name="t", out_dir=out, overrides={"epsilon": -1.0}, defaults=defaults)
    with pytest.raises(ConfigError, match="Unknown run setting"):
        build_run_config(cfg, name="t", out_dir=out, overrides={"epochs": 1}, defaults=defaults)
    with pytest.raises(ConfigError, match="strategy='fedsgd' is unknown; use one of fedavg"):
        build_run_config(cfg, name="t", out_dir=out, overrides={"strategy": "fedsgd"}, defaults=defaults)
    nodp = build_run_config(cfg, name="t", out_dir=out, overrides={"privacy-mode": "none"}, defaults=defaults)[1]
    assert nodp.training.learning_rate == NON_PRIVATE_LEARNING_RATE  # the same automatic rate as `medfed simulate`
    out.mkdir(parents=True)
    (out / "report.html").write_text("done")
    again, note = choose_out_dir(cfg.runs_dir, "trial")
    assert again == cfg.runs_dir / "trial-2" and "shares its privacy scope 'trial'" in note


def test_staged_app_is_a_small_real_copy(tmp_path: Path) -> None:
    stage = stage_app(tmp_path / "stage")
    files = [p for p in stage.rglob("*") if p.is_file()]
    assert (stage / "pyproject.toml").is_file() and (stage / "server" / "server_app.py").is_file()
    assert (stage / "client" / "client_app.py").is_file() and (stage / "common" / "config.py").is_file()
    assert not any(p.is_symlink() for p in stage.rglob("*"))
    assert {p.suffix for p in files} == {".py", ".toml"}
    assert not (stage / "tests").exists() and not (stage / "simulations").exists()


def test_a_synthesis_schema_file_travels_inline_in_the_run_config(tmp_path: Path, pki_dir: Path) -> None:
    """The sites cannot open a path on the server: `medfed server run` sends the (public) schema itself."""
    import json

    from server.deploy.submit import app_defaults

    columns = [{"name": "age", "kind": "continuous", "min": 0, "max": 100},
               {"name": "sex", "kind": "categorical", "values": [0, 1]}]
    (tmp_path / "schema.json").write_text(json.dumps({"label": "outcome", "columns": columns}, indent=2))
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, extra='[run]\ndataset = "heart-disease"\n'
                                           'task = "synthesize"\nsynth-schema = "schema.json"\n'))
    defaults = app_defaults(stage_app(tmp_path / "stage"))
    sent, run = build_run_config(cfg, name="s", out_dir=tmp_path / "o", overrides={}, defaults=defaults)
    assert json.loads(sent["synth-schema"])["label"] == "outcome" and "\n" not in sent["synth-schema"]
    assert run.synthesis.schema == sent["synth-schema"]
    (tmp_path / "broken.json").write_text('{"columns": [{"name": "age", "kind": "text"}]}')
    with pytest.raises(ConfigError, match="kind 'text'"):
        build_run_config(cfg, name="s", out_dir=tmp_path / "o", overrides={"synth-schema": "broken.json"},
                         defaults=defaults)
