"""`medfed client status`: what a site operator sees with the daemon stopped, and the connection state read from the log."""

from __future__ import annotations

import json
from pathlib import Path

from client.daemon.status import connection_from_log
from tests.deploy_files import app, pki_dir, runner, site_toml  # noqa: F401 - pki_dir is a fixture


def test_status_without_a_daemon(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir)
    result = runner.invoke(app, ["client", "status", "--site-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "daemon: not running" in result.output
    assert "last known connection: never started" in result.output
    assert "no run has trained at this site yet" in result.output

    from client.privacy.ledger import PrivacyLedger, RoundRecord

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
