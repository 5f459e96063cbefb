"""Process harness for tests that start real Flower SuperLink/SuperNode OS processes.

Why this exists: a multi-process federation test starts a SuperLink, several SuperNodes and the
`flwr` CLI. If a test fails half-way, nothing may be left running: every process here

- binds to 127.0.0.1 only (callers pass ports from `free_port()`),
- runs in its own session/process group (`start_new_session=True`) so it can be stopped as a
  group by PGID, never by name,
- has a hard deadline after which the harness kills it, even if the test hangs,
- is stopped by `ProcessGroup.__exit__` and, as a last resort, by an `atexit` hook.

Flower 1.41 specifics handled here (see docs/notes/flower-deployment.md):

- The SuperLink starts its SuperExec with `start_new_session=True`, i.e. *outside* the
  SuperLink's process group. `ManagedProcess.stop()` therefore snapshots the process tree before
  signalling and also stops descendants that left the group (each one by its own PID/PGID).
- `flwr ... --format json` exits 0 even on failure and reports `"success": false`; the helpers
  parse the JSON and raise `FlowerCliError` instead.
- Flower logs are ANSI-coloured whatever the terminal; `wait_for_log` strips colour codes.

Process-tree walking, colour stripping, ports, `--node-config` text and the `flwr` calls are
medfed's own helpers (common/ops/supervise.py, client/daemon/supervisor.py, server/deploy/flwr_cli.py), imported rather
than copied: the harness exercises what production runs, and only test-harness code lives here.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.daemon.supervisor import free_port, node_config_text
from common.ops.supervise import descendants, signal_if_same, stop_processes, strip_ansi
from server.deploy import flwr_cli
from server.deploy.flwr_cli import FlwrResult, run_flwr, run_in_own_group

LOCALHOST = "127.0.0.1"


class FlowerCliError(RuntimeError):
    """A `flwr` CLI call failed (non-zero exit, `success: false`, or unparsable output)."""


# --------------------------------------------------------------------------- processes


class ManagedProcess:
    """One OS process with a log file, a hard deadline and a clean, PID-based stop."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        lifetime: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.deadline_exceeded = False
        self._lock = threading.Lock()
        self._stopped = False
        # The command line goes to a side file so that log patterns never match the argv.
        self.log_path.with_suffix(".cmd").write_text(shlex.join(self.argv) + "\n")
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.pgid = self.pid  # start_new_session=True makes the child a session/group leader
        self.started_at = time.monotonic()
        self.deadline = self.started_at + lifetime
        self._known_descendants: set[tuple[int, int]] = set()
        self._timer = threading.Timer(lifetime, self._on_deadline)
        self._timer.daemon = True
        self._timer.start()
        _LIVE.add(self)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.popen.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """The process's log so far, without ANSI colour codes."""
        try:
            return strip_ansi(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; raise TimeoutError (it keeps running)."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{self.name} (pid {self.pid}) still running after {timeout:.0f} s.\n"
                f"--- last lines of {self.log_path}:\n{self.tail()}"
            ) from None

    def remember_descendants(self) -> None:
        """Record the current process tree so that children which left our process group
        (e.g. the SuperLink's SuperExec) can still be stopped after the parent died."""
        if self.is_running():
            self._known_descendants.update(descendants(self.pid))

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` s, then clean up stragglers.

        Idempotent and thread-safe; returns the exit code (negative = killed by signal).
        """
        with self._lock:
            if self._stopped:
                return self.popen.returncode
            self._timer.cancel()
            self.remember_descendants()
            if self.is_running():
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(timeout=10)
            # Our group may still hold children (the leader died first); take them too.
            self._signal_group(signal.SIGKILL)
            stop_processes(self._known_descendants, grace)
            self._stopped = True
            _LIVE.discard(self)
            return self.popen.returncode

    def kill(self) -> int | None:
        """Crash the process: SIGKILL its group and every descendant at once, no clean-up
        (what a power cut or the OOM killer does). Returns the exit code (-9)."""
        self.remember_descendants()
        self._signal_group(signal.SIGKILL)
        for d in self._known_descendants:
            signal_if_same(*d, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return self.stop(grace=2.0)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_deadline(self) -> None:
        self.deadline_exceeded = True
        try:
            with self.log_path.open("a") as log:
                log.write(f"\n[procs] {self.name}: hard deadline reached, stopping it\n")
        except OSError:
            pass
        self.stop(grace=2.0)


_LIVE: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: never leave a process behind when the interpreter exits."""
    for proc in list(_LIVE):
        proc.stop(grace=1.0)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM to the test run (a CI timeout, a `kill`) would end Python without running
    fixture teardowns or atexit hooks, leaving every server of the run behind. Treated as
    Ctrl-C instead, pytest stops, tears the fixtures down, and `_stop_leftovers` runs."""
    raise KeyboardInterrupt(f"signal {signum}")


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


class ProcessGroup:
    """Starts processes and stops every one of them on exit, even when the test failed.

    Usage::

        with ProcessGroup(tmp_path / "logs") as procs:
            link = procs.start(["flower-superlink", ...], name="superlink")
    """

    def __init__(self, log_dir: Path, default_lifetime: float = 300.0) -> None:
        self.log_dir = Path(log_dir)
        self.default_lifetime = default_lifetime
        self.processes: list[ManagedProcess] = []
        self._last: set[ManagedProcess] = set()

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        lifetime: float | None = None,
        stop_last: bool = False,
    ) -> ManagedProcess:
        """Start `argv` with its log at `<log_dir>/<name>.log`; `lifetime` s hard deadline."""
        proc = ManagedProcess(
            argv,
            name=name,
            log_path=self.log_dir / f"{name}.log",
            lifetime=lifetime if lifetime is not None else self.default_lifetime,
            env=env,
            cwd=cwd,
        )
        self.processes.append(proc)
        if stop_last:
            self._last.add(proc)
        return proc

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop everything: first, in parallel, all processes not started with `stop_last`
        (SuperNodes need ~2 s each to deactivate), then the `stop_last` ones (the SuperLink)."""
        for proc in self.processes:
            proc.remember_descendants()
        first = [p for p in self.processes if p not in self._last]
        for wave in (first, [p for p in self.processes if p in self._last]):
            threads = [threading.Thread(target=p.stop, args=(grace,)) for p in wave]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def logs(self, lines: int = 30) -> str:
        """The tails of all logs: attach this to an assertion message."""
        return "\n".join(
            f"===== {p.name} (pid {p.pid}, rc {p.returncode}) {p.log_path}\n{p.tail(lines)}"
            for p in self.processes
        )

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# --------------------------------------------------------------------------- waiting


def _check_alive(proc: ManagedProcess | None, waiting_for: str) -> None:
    if proc is not None and not proc.is_running():
        raise RuntimeError(
            f"{proc.name} exited with code {proc.returncode} while waiting for {waiting_for}.\n"
            f"--- last lines of {proc.log_path}:\n{proc.tail()}"
        )


def wait_until(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float,
    procs: Sequence[ManagedProcess] = (),
    interval: float = 0.2,
) -> None:
    """Poll `condition` until it is true. Raises RuntimeError (with its log tail) as soon as one
    of `procs` exits, and TimeoutError (with their log tails) after `timeout` s."""
    end = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            _check_alive(proc, what)
        if time.monotonic() >= end:
            tails = "\n".join(f"--- last lines of {p.log_path}:\n{p.tail()}" for p in procs)
            raise TimeoutError(f"Still waiting for {what} after {timeout:.0f} s.\n{tails}")
        time.sleep(interval)


def wait_for_port(
    host: str, port: int, timeout: float, proc: ManagedProcess | None = None
) -> None:
    """Wait until a TCP connect to host:port succeeds; fail early if `proc` dies."""
    end = time.monotonic() + timeout
    while True:
        _check_alive(proc, f"{host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() >= end:
            raise TimeoutError(f"Nothing listens on {host}:{port} after {timeout:.1f} s.")
        time.sleep(0.1)


def wait_for_log(
    path: Path, pattern: str, timeout: float, proc: ManagedProcess | None = None
) -> re.Match[str]:
    """Wait until the (colour-stripped) log at `path` matches the regex `pattern`."""
    regex = re.compile(pattern, re.MULTILINE)
    end = time.monotonic() + timeout
    while True:
        try:
            text = strip_ansi(Path(path).read_text(errors="replace"))
        except FileNotFoundError:
            text = ""
        if match := regex.search(text):
            return match
        _check_alive(proc, f"/{pattern}/ in {path}")
        if time.monotonic() >= end:
            tail = "\n".join(text.splitlines()[-30:])
            raise TimeoutError(
                f"/{pattern}/ not found in {path} after {timeout:.1f} s.\n--- last lines:\n{tail}"
            )
        time.sleep(0.2)


# --------------------------------------------------------------------------- flwr CLI


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a short command in its own process group; an overrun kills the group and fails the
    test with TimeoutError."""
    try:
        return run_in_own_group(argv, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{shlex.join(map(str, argv))} took more than {timeout:.0f} s.") from None


def flwr_json(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60.0) -> FlwrResult:
    """Run `flwr <args> --format json` and return the JSON; any failure fails the test."""
    res = flwr_cli.flwr_json(args, env=env, timeout=timeout)
    if not res.ok:
        raise FlowerCliError(f"`flwr {shlex.join(map(str, args))}` failed: {res.error}")
    return res


def register_supernode(
    public_key: Path, connection: str, *, env: Mapping[str, str], timeout: float = 60.0
) -> int:
    """`flwr supernode register` an OpenSSH ECDSA (NIST curve) public key; return node id."""
    data = flwr_json(["supernode", "register", str(public_key), connection], env=env, timeout=timeout)
    return int(data["node-id"])


def list_supernodes(connection: str, *, env: Mapping[str, str]) -> list[dict]:
    """`flwr supernode list`: dicts with node-id (str) and status (registered/online/...)."""
    return list(flwr_json(["supernode", "list", connection], env=env)["nodes"])


def wait_for_supernodes_online(
    connection: str, count: int, *, env: Mapping[str, str], timeout: float = 60.0
) -> list[dict]:
    """Wait until at least `count` SuperNodes report status `online` on the SuperLink."""
    end = time.monotonic() + timeout
    while True:
        nodes = list_supernodes(connection, env=env)
        online = [n for n in nodes if n.get("status") == "online"]
        if len(online) >= count:
            return online
        if time.monotonic() >= end:
            raise TimeoutError(f"Only {len(online)}/{count} SuperNodes online: {nodes}")
        time.sleep(1.0)


def flwr_run(
    app_dir: Path,
    connection: str,
    *,
    env: Mapping[str, str],
    run_config: Mapping[str, str | int | float | bool] | str | None = None,
    timeout: float = 120.0,
) -> int:
    """Submit a run (`flwr run APP CONNECTION`); return its run id.

    `flwr run` builds the FAB from `app_dir` (all non-ignored .py/.toml/.md/.json/.yaml files),
    so it scans the whole directory tree, `.venv` included: allow a few seconds.
    """
    args = ["run", str(app_dir), connection]
    if run_config:
        text = run_config if isinstance(run_config, str) else node_config_text(run_config)
        args += ["--run-config", text]
    return int(flwr_json(args, env=env, timeout=timeout)["run-id"])


def list_runs(connection: str, *, env: Mapping[str, str], run_id: int | None = None) -> list[dict]:
    args = ["ls", connection] + (["--run-id", str(run_id)] if run_id is not None else [])
    return list(flwr_json(args, env=env)["runs"])


def wait_for_run(
    connection: str,
    run_id: int,
    *,
    env: Mapping[str, str],
    timeout: float,
    poll: float = 2.0,
    watch: Sequence[ManagedProcess] = (),
) -> dict:
    """Poll `flwr ls --run-id` until the run's status starts with `finished`; return the record.

    Status is `finished:completed`, `finished:failed` or `finished:stopped`; callers assert.
    Fails early if any process in `watch` (SuperLink, SuperNodes) died.
    """
    end = time.monotonic() + timeout
    while True:
        for proc in watch:
            _check_alive(proc, f"run {run_id}")
        runs = list_runs(connection, env=env, run_id=run_id)
        if runs and str(runs[0].get("status", "")).startswith("finished"):
            return runs[0]
        if time.monotonic() >= end:
            raise TimeoutError(f"Run {run_id} not finished after {timeout:.0f} s: {runs}")
        time.sleep(poll)


def run_logs(connection: str, run_id: int, *, env: Mapping[str, str], timeout: float = 60.0) -> str:
    """The ServerApp's log of a run (`flwr log RUN_ID CONNECTION --show`), colour-stripped."""
    res = run_flwr(["log", str(run_id), connection, "--show"], env=env, timeout=timeout)
    if res.returncode != 0:
        raise FlowerCliError(f"`flwr log {run_id}` failed: {res.stderr[-2000:]}")
    return strip_ansi(res.stdout)


# --------------------------------------------------------------------------- Flower processes


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the SuperLink: CA certificate, server certificate and its key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def start_superlink(
    group: ProcessGroup,
    *,
    port: int,
    env: Mapping[str, str],
    tls: TlsFiles | None,
    database: Path | str = ":flwr-in-memory:",
    enable_supernode_auth: bool = True,
    cwd: Path | None = None,
    lifetime: float | None = None,
    startup_timeout: float = 30.0,
    name: str = "superlink",
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """Start `flower-superlink` on 127.0.0.1:port (Fleet + Control + Runtime on ONE port).

    The ServerApp later runs as `flwr-serverapp`, a grandchild (via SuperExec) with this
    process's environment and working directory `cwd`.
    """
    argv = ["flower-superlink", "--host", LOCALHOST, "--port", str(port)]
    if tls is None:
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile", str(Path(tls.ca_cert).resolve()),
            "--ssl-certfile", str(Path(tls.server_cert).resolve()),
            "--ssl-keyfile", str(Path(tls.server_key).resolve()),
        ]  # fmt: skip
    if enable_supernode_auth:
        argv.append("--enable-supernode-auth")
    argv += ["--database", str(database), "--disable-runtime-dependency-installation"]
    argv += list(extra_args)
    proc = group.start(argv, name=name, env=env, cwd=cwd, lifetime=lifetime, stop_last=True)
    wait_for_log(proc.log_path, r"Uvicorn running on", startup_timeout, proc=proc)
    wait_for_port(LOCALHOST, port, startup_timeout, proc=proc)
    proc.remember_descendants()  # its SuperExec runs in a session of its own
    return proc


def start_supernode(
    group: ProcessGroup,
    *,
    superlink_port: int,
    env: Mapping[str, str],
    name: str,
    root_cert: Path | None,
    private_key: Path | None,
    node_config: Mapping[str, str | int | float | bool] | None = None,
    runtime_port: int | None = None,
    insecure: bool = False,
    max_retries: int | None = None,
    max_wait_time: float | None = 60.0,
    cwd: Path | None = None,
    lifetime: float | None = None,
    wait_connected: float | None = 30.0,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """Start `flower-supernode` against 127.0.0.1:superlink_port.

    Each SuperNode on one host needs its own `--port` (its local Runtime API, default 9094).
    With `wait_connected`, wait for the "SuperNode ID:" log line (registered and activated).
    """
    argv = ["flower-supernode", "--superlink", f"{LOCALHOST}:{superlink_port}"]
    if insecure:
        argv.append("--insecure")
    if root_cert is not None:
        argv += ["--root-certificates", str(Path(root_cert).resolve())]
    if private_key is not None:
        argv += ["--auth-supernode-private-key", str(Path(private_key).resolve())]
    if node_config:
        argv += ["--node-config", node_config_text(node_config)]
    argv += ["--host", LOCALHOST, "--port", str(runtime_port or free_port())]
    if max_retries is not None:
        argv += ["--max-retries", str(max_retries)]
    if max_wait_time is not None:
        argv += ["--max-wait-time", str(max_wait_time)]
    argv += list(extra_args)
    proc = group.start(argv, name=name, env=env, cwd=cwd, lifetime=lifetime)
    if wait_connected:
        wait_for_log(proc.log_path, r"SuperNode ID: \d+", wait_connected, proc=proc)
    return proc
