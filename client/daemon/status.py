"""`medfed client status`: is the daemon up, is it connected, how much budget is spent.

Read-only and safe to run while the daemon runs: the pid file says whether the daemon lives,
the daemon's own log lines (`medfed-client: ...`, written by client/daemon/supervisor.py) and Flower's
`SuperNode ID:` line say where the connection stands, and the privacy ledger (re-read from
disk, never written) says what each run has spent of the site's budget and what all runs
together have spent of its lifetime budget (`[privacy] total-epsilon`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from client.daemon.supervisor import LOG_PREFIX
from client.daemon.preflight import daemon_alive, read_pid
from client.daemon.site_config import SiteConfig
from common.errors import MedfedError

TAIL_BYTES = 2_000_000
_START_RE = re.compile(rf"^(\S+) {LOG_PREFIX}: starting SuperNode \(attempt (\d+)\)")
_CONNECTED_RE = re.compile(rf"^(\S+) {LOG_PREFIX}: connected to \S+ as node (\d+)")
_EXITED_RE = re.compile(rf"^(\S+) {LOG_PREFIX}: (SuperNode exited .*)$")
_ERROR_RE = re.compile(rf"^(\S+) {LOG_PREFIX}: error: (.*)$")
_STOPPED_RE = re.compile(rf"^(\S+) {LOG_PREFIX}: (stopped|received \S+: stopped)")
_RETRY_RE = re.compile(r"Connection attempt failed, retrying")
_RECOVERED_RE = re.compile(r"Connection successful after")


def _tail_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def connection_from_log(path: Path) -> dict[str, Any]:
    """The connection state as the last lines of client.log describe it."""
    out: dict[str, Any] = {"state": "unknown", "node_id": None, "attempt": 0, "since": None,
                           "last_error": None, "flower_retries": 0}
    lines = _tail_lines(path)
    if not lines:
        out["state"] = "never started"
        return out
    for line in lines:
        if m := _START_RE.match(line):
            out.update(state="connecting", attempt=int(m.group(2)), since=m.group(1), node_id=None, flower_retries=0)
        elif m := _CONNECTED_RE.match(line):
            out.update(state="connected", node_id=int(m.group(2)), since=m.group(1), flower_retries=0)
        elif m := _EXITED_RE.match(line):
            out.update(state="disconnected", last_error=m.group(2), since=m.group(1))
        elif m := _ERROR_RE.match(line):
            out.update(state="failed", last_error=m.group(2), since=m.group(1))
        elif m := _STOPPED_RE.match(line):
            out.update(state="stopped", since=m.group(1))
        elif _RETRY_RE.search(line):
            out["flower_retries"] += 1
        elif _RECOVERED_RE.search(line):
            out["flower_retries"] = 0
    return out


def ledger_summary(config: SiteConfig) -> dict[str, Any]:
    from client.privacy.ledger import PrivacyLedger

    try:
        runs = PrivacyLedger(config.ledger_path).summary()
    except MedfedError as err:
        return {"path": str(config.ledger_path), "error": err.message, "runs": {}}
    return {"path": str(config.ledger_path), "runs": runs}


def lifetime_summary(ledger_path: Path, delta: float, total_epsilon: float) -> dict[str, Any]:
    """Every run's accountant history in the ledger composed (RDP) at the site's `delta`, against
    `total_epsilon`: a sum of per-run epsilons would overstate it, a per-run view would hide it."""
    from client.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(ledger_path)
    composed = ledger.lifetime_spent(delta)  # the ledger's own composition, with its cached RDP curves
    return {"composed_epsilon": composed, "total_epsilon": total_epsilon,
            "left": max(0.0, total_epsilon - composed), "delta": delta, "runs": len(ledger.scopes())}


def _lifetime(config: SiteConfig) -> dict[str, Any]:
    try:
        policy = config.policy()
        source = "site.toml" if config.total_epsilon is not None else "default: [privacy] epsilon, as total-epsilon is not set"
        return {**lifetime_summary(config.ledger_path, policy.delta, float(policy.total_epsilon)), "source": source}
    except MedfedError as err:
        return {"error": err.message}


def collect_status(config: SiteConfig) -> dict[str, Any]:
    pid = read_pid(config.pid_file)
    running = pid is not None and daemon_alive(pid)
    return {
        "site": config.name,
        "config": str(config.config_path),
        "server": config.server,
        "daemon": {
            "running": running,
            "pid": pid if running else None,
            "pid_file": str(config.pid_file),
            "stale_pid_file": pid is not None and not running,
        },
        "connection": connection_from_log(config.log_file),
        "log": str(config.log_file),
        "budget": {"epsilon": config.epsilon, "delta": config.delta},
        "ledger": ledger_summary(config),
        "lifetime": _lifetime(config),
    }


def render(status: dict[str, Any]) -> list[str]:
    """Human-readable lines for the terminal."""
    daemon, conn, ledger = status["daemon"], status["connection"], status["ledger"]
    lines = [f"site {status['site']} (config {status['config']}, server {status['server']})"]
    if daemon["running"]:
        lines.append(f"daemon: running, pid {daemon['pid']}")
    elif daemon["stale_pid_file"]:
        lines.append(f"daemon: not running (stale pid file {daemon['pid_file']}: the daemon did not stop cleanly)")
    else:
        lines.append("daemon: not running")
    prefix = "connection" if daemon["running"] else "last known connection"
    state = conn["state"]
    if state == "connected":
        text = f"connected as node {conn['node_id']} since {conn['since']} (attempt {conn['attempt']})"
        if conn["flower_retries"]:
            text += f"; {conn['flower_retries']} failed reconnection attempt(s) since: the server may be away"
    elif state == "connecting":
        text = f"connecting (attempt {conn['attempt']}, {conn['flower_retries']} retries so far)"
    else:
        text = state + (f" at {conn['since']}" if conn["since"] else "")
    lines.append(f"{prefix}: {text}")
    if conn["last_error"] and state != "connected":
        lines.append(f"  last error: {conn['last_error']}")
    lines.append(f"  log: {status['log']}")
    budget = status["budget"]
    lines.append(f"privacy budget per run: epsilon {budget['epsilon']:g}, delta {budget['delta']:g}")
    lines.append(f"privacy ledger {ledger['path']}:")
    if ledger.get("error"):
        lines.append(f"  ERROR: {ledger['error']}")
    for scope, entry in ledger["runs"].items():
        lines.append(
            f"  run {scope}: epsilon spent {entry['spent']:.3f} of {entry['budget']:g}, left {entry['left']:.3f} "
            f"({entry['rounds']} round(s), delta {entry['delta']:g}, {entry['status']})"
        )
    if not ledger["runs"] and not ledger.get("error"):
        lines.append("  no run has trained at this site yet")
    life = status["lifetime"]
    if life.get("error"):
        lines.append(f"lifetime budget: ERROR: {life['error']}")
    else:
        lines.append(
            f"lifetime budget (all {life['runs']} run(s) composed): epsilon {life['composed_epsilon']:.3f} "
            f"of total-epsilon {life['total_epsilon']:g}, left {life['left']:.3f} ({life['source']})"
        )
    return lines
