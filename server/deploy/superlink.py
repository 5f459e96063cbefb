"""`medfed server start`: the Flower SuperLink with TLS, node authentication and a database.

Sequence (each step's Flower facts are in docs/notes/flower-deployment.md):
  1. the caller validated server.toml (server/deploy/settings.py);
  2. start `flower-superlink` (one HTTPS port for Fleet, Control and Runtime APIs) in
     `state-dir`, its output teed to `state-dir/logs/superlink.log` and stdout;
  3. once it listens, write the CLI connection `medfed` into `state-dir/flwr-home/config.toml`
     and register every public key of `[auth] authorized-nodes` (`flwr supernode register`;
     a key registered on an earlier start answers "already in use", which is fine);
  4. supervise until SIGTERM/SIGINT, then stop the SuperLink and the SuperExec it started in
     a session of its own; exit with the SuperLink's status.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from common.ops import pki
from common.atomic import atomic_write_json
from common.errors import ConfigError, FederationError, SecurityError
from common.ops.supervise import Child, LogSink, StopFlag, exit_status, flower_bin, flower_env
from server.deploy.settings import CONNECTION, ServerSettings
from server.deploy.flwr_cli import flwr_json, write_connection

READY_PATTERN = "Uvicorn running on"
STARTUP_TIMEOUT_S = 90.0
ALREADY_REGISTERED = "already in use"


def superlink_argv(settings: ServerSettings) -> list[str]:
    argv = [flower_bin("flower-superlink"), "--host", settings.host, "--port", str(settings.port)]
    if settings.insecure:
        argv.append("--insecure")
    else:
        assert settings.ca_cert and settings.server_cert and settings.server_key
        argv += [
            "--ssl-ca-certfile", str(settings.ca_cert.resolve()),
            "--ssl-certfile", str(settings.server_cert.resolve()),
            "--ssl-keyfile", str(settings.server_key.resolve()),
            "--enable-supernode-auth",
        ]  # fmt: skip
    argv += ["--database", str(settings.database.resolve()), "--disable-runtime-dependency-installation"]
    return argv


def prepare_state_dir(settings: ServerSettings) -> None:
    for folder in (settings.state_dir, settings.logs_dir, settings.runs_dir, settings.flwr_home):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise ConfigError(
                f"[server] state-dir: cannot create {folder}: {err}.",
                f"create it for the user that runs medfed, or change state-dir in {settings.config_path}.",
            ) from None


def check_port_free(settings: ServerSettings) -> None:
    """Fail early and clearly instead of letting Flower die on a bind error."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((settings.host, settings.port))
        except OSError as err:
            in_use = err.errno == errno.EADDRINUSE
            raise ConfigError(
                f"[server] address {settings.address} cannot be used: "
                + ("the port is already in use (another medfed server or SuperLink?)." if in_use else f"{err}."),
                f"stop the other process, or choose another address in {settings.config_path}.",
            ) from None


def connect_cli(settings: ServerSettings) -> dict[str, str]:
    """Write the `medfed` CLI connection and return the environment for `flwr` calls."""
    env = flower_env(settings.flwr_home)
    write_connection(
        settings.flwr_home,
        CONNECTION,
        settings.local_address,
        root_cert=settings.ca_cert,
        insecure=settings.insecure,
    )
    return env


# --------------------------------------------------------------------------- registration


def _register_one(site: str, pub_file: Path, env: dict[str, str]) -> tuple[str, str | None, str]:
    """(site, node id or None, "registered" | "already registered" | error text)."""
    res = flwr_json(["supernode", "register", str(pub_file), CONNECTION, "--name", site], env=env, timeout=90)
    if res.ok:
        return site, str(res["node-id"]), "registered"
    if ALREADY_REGISTERED in res.error:
        return site, None, "already registered"
    return site, None, res.error or "unknown error"


def register_nodes(settings: ServerSettings, env: dict[str, str], sink: LogSink) -> dict[str, dict]:
    """Register every key of authorized_nodes.json; record site -> node id in nodes.json."""
    assert settings.authorized_nodes is not None
    nodes = pki.load_authorized_nodes(settings.authorized_nodes)
    if not nodes:
        sink.say(f"warning: {settings.authorized_nodes} lists no hospital yet: no SuperNode can join. "
                 "Add them with `medfed pki node`, copy the file here and restart.")
    keys_dir = settings.state_dir / "node-keys"
    keys_dir.mkdir(exist_ok=True, mode=0o700)
    previous = _read_nodes_file(settings.nodes_file)
    jobs = []
    for site, node in nodes.items():
        pub = keys_dir / f"{site}.pub"
        pub.write_text(node.public_key.strip() + "\n")
        jobs.append((site, pub))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: _register_one(*job, env), jobs))
    record: dict[str, dict] = {}
    failed = []
    for site, node_id, outcome in results:
        fp = nodes[site].fingerprint
        old = previous.get(site, {})
        if outcome == "already registered" and old.get("fingerprint") == fp:
            node_id = old.get("node-id")
        if outcome in ("registered", "already registered"):
            record[site] = {"node-id": node_id, "fingerprint": fp, "status": outcome}
            sink.say(f"hospital {site}: key {fp} {outcome}" + (f" (node id {node_id})" if node_id else ""))
        else:
            failed.append(f"{site} ({fp}): {outcome}")
    _write_nodes_file(settings.nodes_file, record)
    if failed:
        raise SecurityError(
            "The SuperLink refused to register these hospital keys:\n  - " + "\n  - ".join(failed),
            f"recreate the key with `medfed pki node` (ECDSA P-384, OpenSSH format) and copy the new "
            f"{settings.authorized_nodes.name} to {settings.authorized_nodes}.",
        )
    return record


def _read_nodes_file(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
        return {k: v for k, v in data.get("nodes", {}).items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_nodes_file(path: Path, record: dict[str, dict]) -> None:
    doc = {"updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "nodes": record}
    atomic_write_json(path, doc)


# --------------------------------------------------------------------------- serving


def serve(settings: ServerSettings, *, echo: bool = True) -> int:
    """Start and supervise the SuperLink until it exits or we are asked to stop; exit status."""
    prepare_state_dir(settings)
    check_port_free(settings)
    sink = LogSink(settings.logs_dir / "superlink.log", echo=echo, prefix="medfed-server")
    stop = StopFlag()
    stop.install()
    for warning in settings.warnings:
        sink.say(f"warning: {warning}")
    ready = threading.Event()

    def on_line(line: str) -> None:
        if READY_PATTERN in line:
            ready.set()

    argv = superlink_argv(settings)
    sink.say(f"starting the SuperLink on {settings.address}: {' '.join(argv)}")
    child = Child(argv, sink=sink, env=flower_env(settings.flwr_home), cwd=settings.state_dir, on_line=on_line)
    try:
        _wait_ready(child, ready, stop)
        if stop.is_set:
            return _shutdown(child, sink, stop)
        child.remember_descendants()  # its SuperExec lives in a session of its own
        env = connect_cli(settings)
        if settings.insecure:
            sink.say("insecure mode: no node authentication, no key registered.")
            summary = "no TLS, no node authentication"
        else:
            record = register_nodes(settings, env, sink)
            summary = f"TLS on, node authentication on, {len(record)} hospital key(s) registered"
        sink.say(f"server ready on {settings.address} ({summary}); submit a run with "
                 f"`medfed server run --config {settings.config_path}`.")
        last_snapshot = 0.0
        while child.running():
            if stop.wait(1.0):
                return _shutdown(child, sink, stop)
            if time.monotonic() - last_snapshot > 5:
                child.remember_descendants()
                last_snapshot = time.monotonic()
        code = child.stop()
        sink.say(f"the SuperLink exited by itself with code {code}; see the lines above.")
        return exit_status(code)
    except BaseException:
        child.stop()
        raise
    finally:
        sink.close()


def _wait_ready(child: Child, ready: threading.Event, stop: StopFlag) -> None:
    end = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready.is_set() and not stop.is_set:
        if not child.running():
            child.wait(5)
            raise FederationError(
                f"The SuperLink exited with code {child.returncode} while starting:\n{child.tail(15)}",
                "fix the cause named above (certificate files, port, database) and start again.",
            )
        if time.monotonic() > end:
            raise FederationError(
                f"The SuperLink did not become ready within {STARTUP_TIMEOUT_S:.0f} s:\n{child.tail(15)}",
                "check the log above; on a very slow machine simply start again.",
            )
        ready.wait(0.2)


def _shutdown(child: Child, sink: LogSink, stop: StopFlag) -> int:
    sink.say(f"received {stop.signal_name or 'a stop request'}: stopping the SuperLink and its SuperExec.")
    code = child.stop(grace=20.0)
    sink.say(f"stopped (SuperLink exit code {code}).")
    # A SuperLink ended by our SIGTERM re-raises it (-15): that is a clean stop, exit 0 so that
    # systemd does not mark `systemctl stop` as a failure. Anything else is its real status.
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else exit_status(code)
