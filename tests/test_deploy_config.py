"""Fast checks of the deployment commands: server.toml / site.toml validation, the CLI error
paths and exit codes, the SuperLink/SuperNode command lines, run staging, and `client status`
on a site whose daemon is not running. Nothing here starts a Flower process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from client import daemon, preflight
from client.cli import client_cli
from client.site_config import load_site_config
from client.status import connection_from_log
from common import pki
from common.config import NON_PRIVATE_LEARNING_RATE
from common.errors import ConfigError, DataError, FederationError, SecurityError
from server import deployment
from server.cli import server_app_cli
from server.deploy_config import load_server_settings
from server.run_follower import round_line
from server.submit import build_run_config, choose_out_dir, parse_overrides, stage_app

app = typer.Typer()
app.add_typer(server_app_cli, name="server")
app.add_typer(client_cli, name="client")
runner = CliRunner()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server_cert(d, hosts=["fl.example.org"])
    pki.create_node_identity(d, "cleveland")
    return d


def server_toml(tmp_path: Path, pki_dir: Path, *, server: str = "", tls: str | None = None, extra: str = "") -> Path:
    tls = tls if tls is not None else (
        f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\nserver-cert = "{pki_dir / "server.pem"}"\n'
        f'server-key = "{pki_dir / "server.key"}"\n'
        f'[auth]\nauthorized-nodes = "{pki_dir / "authorized_nodes.json"}"\n'
    )
    text = f'[server]\naddress = "0.0.0.0:9092"\nstate-dir = "state"\n{server}\n{tls}\n{extra}'
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def site_toml(tmp_path: Path, pki_dir: Path, *, site: str = "", data: str | None = None,
              privacy: str = "epsilon = 5.0\ndelta = 1e-4\n", security: str | None = None) -> Path:
    data = data if data is not None else 'dataset = "heart-disease"\n'
    security = security if security is not None else (
        f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n'
        f'[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\npublic-key = "{pki_dir / "cleveland.pub"}"\n'
    )
    text = (f'[site]\nname = "cleveland"\nserver = "fl.example.org:9092"\nstate-dir = "state"\n{site}\n'
            f"[data]\n{data}\n[privacy]\n{privacy}\n{security}")
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- server.toml


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


# --------------------------------------------------------------------------- server run pieces


def test_run_config_overrides_names_and_out_dirs(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_server_settings(server_toml(tmp_path, pki_dir, extra='[run]\ndataset = "heart-disease"\npartition = "natural"\n'))
    assert parse_overrides(["num-rounds=3 model='mlp'"]) == {"num-rounds": 3, "model": "mlp"}
    with pytest.raises(ConfigError, match="manages itself"):
        parse_overrides(["out-dir='/tmp/x'"])
    stage = stage_app(tmp_path / "stage")
    from server.submit import app_defaults

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


def test_round_line_shows_metrics_epsilon_and_events() -> None:
    record = {"round": 2, "global": {"auc": 0.81234, "accuracy": 0.7}, "global_source": "federated",
              "fit": {"sites": 3}, "sites": {"a": {"train_loss": 0.5}, "b": {"train_loss": 0.4}, "c": {}},
              "events": ["site c refused to train: budget"], "duration_s": 61.2}
    privacy = {"sites": {"a": {"epsilon": {"2": 3.5}, "budget": 5.0, "status": "ok"},
                         "c": {"epsilon": {}, "budget": 5.0, "status": "budget exhausted"}}}
    lines = round_line(record, privacy, 3)
    assert lines[0].startswith("round 2/3: AUC 0.812  accuracy 0.700")
    assert "3 replied, 2 trained" in lines[0] and "a 3.50/5.0" in lines[0] and "c budget exhausted" in lines[0]
    assert lines[1] == "  event: site c refused to train: budget"


def test_follower_gives_up_with_a_resume_hint_when_the_superlink_is_gone(tmp_path: Path, monkeypatch) -> None:
    """A server that dies mid-run must not leave the operator's terminal waiting in silence."""
    from server import run_follower
    from server.flwr_cli import FlwrResult

    calls: list[int] = []
    monkeypatch.setattr(run_follower, "FILE_POLL_S", 0.01)
    monkeypatch.setattr(run_follower, "LOST_RETRY_S", 0.05)
    monkeypatch.setattr(run_follower, "LOST_AFTER_S", 0.3)

    def refused(*args, **kwargs):
        calls.append(1)
        return FlwrResult(success=False, **{"error-message": "connection refused"})

    monkeypatch.setattr(run_follower, "flwr_json", refused)
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": [{"round": 0}, {"round": 1}]}))
    follower = run_follower.RunFollower(run_id=7, out_dir=tmp_path, env={}, num_rounds=3, echo=lambda line: None,
                                        run_name="heart-x")
    with pytest.raises(FederationError) as err:
        follower.follow()
    assert "Lost contact with the SuperLink" in err.value.problem and "connection refused" in err.value.problem
    assert "rounds up to 1 are recorded" in err.value.problem
    assert "--name heart-x" in err.value.fix and "resumes" in err.value.fix
    assert 3 <= len(calls) <= 12  # retried for LOST_AFTER_S, not forever, not once


# --------------------------------------------------------------------------- site.toml


def test_valid_site_toml_and_node_config(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir, site="require-secagg = false\nruntime-port = 0"))
    assert cfg.dataset == "heart-disease" and cfg.dataset_site == "cleveland"  # site defaults to the name
    node = cfg.node_config()
    assert node == {
        "site": "cleveland", "state-dir": str((tmp_path / "state").resolve()), "device": "auto",
        "epsilon": 5.0, "delta": 1e-4, "require-secagg": False, "dataset": "heart-disease",
        "dataset-site": "cleveland",
    }
    text = daemon.node_config_text(node)
    assert 'site="cleveland"' in text and "epsilon=5.0" in text and "require-secagg=false" in text
    argv = daemon.supernode_argv(cfg, 45678)
    assert argv[argv.index("--root-certificates") + 1] == str(pki_dir / "ca.pem")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(pki_dir / "cleveland.key")
    assert argv[argv.index("--port") + 1] == "45678" and "--insecure" not in argv
    assert argv[argv.index("--max-wait-time") + 1] == "60"


def test_site_toml_problems_are_all_reported(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir, site="devise = \"cpu\"", data='dataset = "heart-disease"\npath = "x.csv"\n',
                     privacy="epsilon = -1.0\ndelta = 2.0\n")
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    text = info.value.message
    assert "[site] devise is not a known key (did you mean 'device'" in text
    assert "[data] needs exactly one of" in text
    assert "[privacy] epsilon=-1.0 must be a positive number" in text and "[privacy] delta=2.0 must be in (0, 1)" in text
    path = site_toml(tmp_path, pki_dir, privacy='epsilon = "five"\n')
    with pytest.raises(ConfigError, match=r'\[privacy\] epsilon = .five. must be a number(.|\n)*\[privacy\] delta is missing'):
        load_site_config(path)


def test_site_key_problems_are_security_errors(tmp_path: Path, pki_dir: Path) -> None:
    other = pki.create_node_identity(tmp_path / "other", "hungary")
    sec = (f'[tls]\nca-cert = "{tmp_path / "no-ca.pem"}"\n[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\n')
    with pytest.raises(SecurityError, match=r"\[tls\] ca-cert .*no-ca.pem cannot be read"):
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    sec = (f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\n'
           f'public-key = "{other.public_key}"\n')
    with pytest.raises(SecurityError, match="is not the public half"):
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    os.chmod(other.private_key, 0o640)
    sec = f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n[identity]\nprivate-key = "{other.private_key}"\n'
    with pytest.raises(SecurityError, match="readable by other users") as info:
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    assert "chmod 600" in info.value.fix


def test_site_insecure_flag_warnings_and_argv(tmp_path: Path, pki_dir: Path, monkeypatch) -> None:
    path = site_toml(tmp_path, pki_dir, security="")
    with pytest.raises(ConfigError, match="--insecure"):
        load_site_config(path)
    cfg = load_site_config(path, insecure=True)
    argv = daemon.supernode_argv(cfg, 1234)
    assert "--insecure" in argv and "--root-certificates" not in argv and "--auth-supernode-private-key" not in argv
    calls = []
    monkeypatch.setattr(daemon, "run_daemon", lambda config: calls.append(config) or 0)
    result = runner.invoke(app, ["client", "start", "--site-config", str(path)])
    assert result.exit_code == 2 and not calls
    result = runner.invoke(app, ["client", "start", "--site-config", str(path), "--insecure"])
    assert result.exit_code == 0, result.output
    assert "warning: this hospital connects WITHOUT TLS" in result.stderr
    assert "warning: node authentication is OFF" in result.stderr


# --------------------------------------------------------------------------- data validation


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


# --------------------------------------------------------------------------- supervision pieces


def test_exit_classification(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    refused = "ERROR :     Exit Code: 305\nFailed to initialize the connection to the SuperLink.\n[code: 2004] Failed to activate SuperNode."
    reason = daemon.classify_exit(1, refused, cfg)
    assert reason.refused and isinstance(reason.fatal, SecurityError)
    tls = "ERROR :     SSL/TLS handshake error detected.\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    assert isinstance(daemon.classify_exit(1, tls, cfg).fatal, SecurityError)
    assert isinstance(daemon.classify_exit(1, "OSError: [Errno 98] Address already in use", cfg).fatal, ConfigError)
    away = ("WARNING :   Giving up reconnection after 5.00 seconds and 6 tries.\nERROR :     Exit Code: 305\n"
            "Failed to initialize the connection to the SuperLink.\n[Errno 111] Connection refused\n")
    reason = daemon.classify_exit(1, away, cfg)
    assert reason.fatal is None and "unreachable ([Errno 111] Connection refused)" in reason.text
    assert daemon.classify_exit(0, "", cfg).fatal is None
    delays = [daemon.backoff_delay(n) for n in range(1, 12)]
    assert all(daemon.MIN_BACKOFF_S <= d <= daemon.MAX_BACKOFF_S for d in delays)
    assert delays[0] < 3 and delays[-1] >= 0.8 * daemon.MAX_BACKOFF_S


def test_a_refusal_is_news_only_for_a_key_never_activated_here(tmp_path: Path, pki_dir: Path) -> None:
    from common.supervise import LogSink, StopFlag

    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    cfg.state_dir.mkdir(parents=True)
    sink = LogSink(tmp_path / "client.log", echo=False)
    sup = daemon.Supervisor(cfg, sink, StopFlag())
    assert not sup.activated_before()  # a refusal now means: not registered -> exit 7
    sup.record_activation("42")
    assert sup.activated_before()  # a refusal now is most likely a server restart -> retry
    assert json.loads((cfg.state_dir / "node-identity.json").read_text())["node-id"] == "42"
    other = pki.create_node_identity(tmp_path / "other", "cleveland")
    sup.fingerprint = other.fingerprint  # the site got a new key: its first refusal is news again
    assert not sup.activated_before()
    sink.close()


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


# --------------------------------------------------------------------------- status


def test_status_without_a_daemon(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "status", "--site-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "daemon: not running" in result.output
    assert "last known connection: never started" in result.output
    assert "no run has trained at this site yet" in result.output

    from client.ledger import PrivacyLedger, RoundRecord

    state = tmp_path / "state"
    ledger = PrivacyLedger(state / "privacy-ledger.json")
    ledger.open_scope("heart-a", accountant="rdp", delta=1e-4, epsilon_budget=5.0)
    ledger.update("heart-a", lambda e: e.rounds.append(RoundRecord(epsilon=3.25, steps=2, completed=True)))
    (state / "medfed-client.pid").write_text("999999999\n")  # a pid that cannot exist
    result = runner.invoke(app, ["client", "status", "--site-config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["daemon"] == {"running": False, "pid": None, "pid_file": str(state / "medfed-client.pid"),
                                "stale_pid_file": True}
    run = status["ledger"]["runs"]["heart-a"]
    assert run["spent"] == 3.25 and run["left"] == 1.75 and run["budget"] == 5.0
    result = runner.invoke(app, ["client", "status", "--site-config", str(path)])
    assert "stale pid file" in result.output and "run heart-a: epsilon spent 3.250 of 5, left 1.750" in result.output


def test_connection_state_is_read_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    log.write_text(
        "2025-01-01T10:00:00+00:00 medfed-client: starting SuperNode (attempt 1) for site a -> s:1\n"
        "INFO :      SuperNode ID: 42\n"
        "2025-01-01T10:00:05+00:00 medfed-client: connected to s:1 as node 42\n"
        "2025-01-01T11:00:00+00:00 medfed-client: SuperNode exited with code 1: the server is unreachable (x). "
        "Reconnect attempt 2 in 2.1 s.\n"
        "2025-01-01T11:00:02+00:00 medfed-client: starting SuperNode (attempt 2) for site a -> s:1\n"
        "WARNING :   Connection attempt failed, retrying in 0.85 seconds\n"
    )
    state = connection_from_log(log)
    assert state["state"] == "connecting" and state["attempt"] == 2 and state["flower_retries"] == 1
    assert state["last_error"].startswith("SuperNode exited with code 1: the server is unreachable")
    with log.open("a") as fh:
        fh.write("2025-01-01T11:00:09+00:00 medfed-client: connected to s:1 as node 42\n")
    state = connection_from_log(log)
    assert state["state"] == "connected" and state["node_id"] == 42


# --------------------------------------------------------------------------- shipped examples


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "deploy").rglob("server.toml")), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_server_tomls_use_only_known_keys(path: Path) -> None:
    cfg = load_server_settings(path, check_files=False)
    assert not cfg.insecure and cfg.authorized_nodes is not None and cfg.run["dataset"] == "heart-disease"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (REPO / "deploy").rglob("*.toml") if p.name != "server.toml"),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shipped_site_tomls_use_only_known_keys(path: Path) -> None:
    cfg = load_site_config(path, check_files=False)
    assert not cfg.insecure and cfg.require_secagg and cfg.private_key is not None
