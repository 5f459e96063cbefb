"""server.toml is validated whole (every problem at once, typed errors with exit codes) before
`medfed server start` runs anything; the SuperLink command line follows from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.ops import pki
from common.errors import ConfigError, SecurityError
from server.deploy import superlink as deployment
from server.deploy.settings import load_server_settings
from tests.deploy_files import REPO, app, pki_dir, runner, server_toml  # noqa: F401 - pki_dir is a fixture


def test_valid_server_toml_resolves_paths_and_run(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, extra='[run]\ndataset = "heart-disease"\nnum-rounds = 3\n'))
    assert (cfg.host, cfg.port, cfg.insecure) == ("0.0.0.0", 9092, False)
    assert cfg.state_dir == (tmp_path / "state").resolve()  # relative to the TOML file's folder
    assert cfg.local_address == "127.0.0.1:9092"
    assert cfg.run == {"dataset": "heart-disease", "num-rounds": 3}
    assert cfg.warnings == ()
    argv = deployment.superlink_argv(cfg)
    assert "--enable-supernode-auth" in argv and "--insecure" not in argv
    assert argv[argv.index("--ssl-keyfile") + 1] == str(pki_dir / "server.key")
    assert argv[argv.index("--database") + 1] == str(cfg.state_dir / "superlink.db")


def test_unknown_and_missing_keys_are_all_reported(tmp_path: Path, pki_dir: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\nadress = "0.0.0.0:9092"\nstate-dir = "s"\n[run]\nnum-round = 3\nout-dir = "x"\n[extra]\n')
    with pytest.raises(ConfigError) as info:
        load_server_settings(path, insecure=True)
    text = info.value.message
    assert str(path) in text and "deploy/examples/server.toml" in text
    assert "[server] adress is not a known key (did you mean 'address'" in text
    assert "[server] address is missing" in text
    assert "[run] num-round is not a run setting (did you mean 'num-rounds'" in text
    assert "[run] out-dir is set by `medfed server run`" in text
    assert "[extra] is not a known table" in text
    assert info.value.exit_code == 2


@pytest.mark.parametrize("address", ["9092", "https://fl.example.org:9092", "host:notaport", "host:70000"])
def test_bad_address_is_a_config_error(tmp_path: Path, pki_dir: Path, address: str) -> None:
    path = server_toml(tmp_path, pki_dir)
    path.write_text(path.read_text().replace('"0.0.0.0:9092"', f'"{address}"'))
    with pytest.raises(ConfigError, match="must be host:port"):
        load_server_settings(path)


def test_missing_certificate_names_key_file_and_fix(tmp_path: Path, pki_dir: Path) -> None:
    missing = tmp_path / "nowhere" / "server.pem"
    path = server_toml(tmp_path, pki_dir)
    path.write_text(path.read_text().replace(str(pki_dir / "server.pem"), str(missing)))
    with pytest.raises(SecurityError) as info:
        load_server_settings(path)
    assert "[tls] server-cert" in info.value.problem and str(missing) in info.value.problem
    assert "medfed pki server" in info.value.fix and str(path) in info.value.fix
    assert info.value.exit_code == 7


def test_loose_or_mismatched_server_key_is_refused(tmp_path: Path, pki_dir: Path) -> None:
    other = tmp_path / "other"
    pki.init_ca(other)
    pki.issue_server_cert(other, hosts=["fl.example.org"])
    path = server_toml(tmp_path, pki_dir)
    path.write_text(path.read_text().replace(str(pki_dir / "server.key"), str(other / "server.key")))
    with pytest.raises(SecurityError, match="does not belong to"):
        load_server_settings(path)
    os.chmod(other / "server.key", 0o644)
    with pytest.raises(SecurityError, match="readable by other users"):
        load_server_settings(path)


def test_insecure_needs_to_be_asked_for(tmp_path: Path, pki_dir: Path) -> None:
    path = server_toml(tmp_path, pki_dir, tls="")
    with pytest.raises(ConfigError, match=r"\[tls\] table is missing.*--insecure"):
        load_server_settings(path)
    cfg = load_server_settings(path, insecure=True)
    assert cfg.insecure and cfg.ca_cert is None
    assert len(cfg.warnings) == 2 and "WITHOUT TLS" in cfg.warnings[0] and "node authentication is OFF" in cfg.warnings[1]
    argv = deployment.superlink_argv(cfg)
    assert "--insecure" in argv and "--enable-supernode-auth" not in argv
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, tls="", server="insecure = true"))
    assert cfg.insecure and len(cfg.warnings) == 2


def test_legacy_control_address_is_ignored_with_a_warning(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, server='control-address = "127.0.0.1:9093"'))
    assert cfg.local_address == "127.0.0.1:9092"
    assert any("control-address is ignored" in w for w in cfg.warnings)


def test_cli_server_start_exit_codes_and_insecure_warning(tmp_path: Path, pki_dir: Path, monkeypatch) -> None:
    result = runner.invoke(app, ["server", "start", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output
    bad = server_toml(tmp_path, pki_dir)
    bad.write_text(bad.read_text().replace(str(pki_dir / "server.key"), str(tmp_path / "gone.key")))
    result = runner.invoke(app, ["server", "start", "--config", str(bad)])
    assert result.exit_code == 7 and "[tls] server-key" in result.output and "Traceback" not in result.output

    calls = []
    monkeypatch.setattr(deployment, "serve", lambda settings: calls.append(settings) or 0)
    plain = server_toml(tmp_path, pki_dir, tls="")
    result = runner.invoke(app, ["server", "start", "--config", str(plain)])
    assert result.exit_code == 2 and not calls  # insecure is never a fallback
    for _ in range(2):  # the warning comes on every start
        result = runner.invoke(app, ["server", "start", "--config", str(plain), "--insecure"])
        assert result.exit_code == 0, result.output
        assert "warning: the server runs WITHOUT TLS" in result.stderr
        assert "warning: node authentication is OFF" in result.stderr
    assert len(calls) == 2 and all(c.insecure for c in calls)


@pytest.mark.parametrize("path", sorted((REPO / "deploy").rglob("server.toml")), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_server_tomls_use_only_known_keys(path: Path) -> None:
    cfg = load_server_settings(path, check_files=False)
    assert not cfg.insecure and cfg.authorized_nodes is not None and cfg.run["dataset"] == "heart-disease"
