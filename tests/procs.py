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
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOCALHOST = "127.0.0.1"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# Every Flower process started by the harness gets these: no network calls home, faster
# SuperExec task polling (default 1 s; the SuperNode's own 3 s poll is hard-coded in Flower).
FLWR_TEST_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
    "PYTHONUNBUFFERED": "1",
}


class FlowerCliError(RuntimeError):
    """A `flwr` CLI call failed (non-zero exit, `success: false`, or unparsable output)."""


# --------------------------------------------------------------------------- process tree


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """Return (ppid, pgid, starttime) of `pid` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] == "Z":  # zombie: already dead, only waiting to be reaped
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _descendants(root: int) -> list[tuple[int, int]]:
    """All live descendants of `root` as (pid, starttime), found by scanning /proc (Linux).

    The start time lets `_kill_if_same` refuse to signal a PID that was reused meanwhile.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[2]))
    found: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def _kill_if_same(pid: int, starttime: int, sig: int) -> bool:
    """Signal `pid` (and its group if it leads one) only if it is still the same process."""
    stat = _proc_stat(pid)
    if stat is None or stat[2] != starttime:
        return False
    try:
        if stat[1] == pid:  # a group leader (it called setsid): take its whole group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


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
            return ANSI_RE.sub("", self.log_path.read_text(errors="replace"))
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
            self._known_descendants.update(_descendants(self.pid))

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
            self._stop_descendants(grace)
            self._stopped = True
            _LIVE.discard(self)
            return self.popen.returncode

    def kill(self) -> int | None:
        """Crash the process: SIGKILL its group and every descendant at once, no clean-up
        (what a power cut or the OOM killer does). Returns the exit code (-9)."""
        self.remember_descendants()
        self._signal_group(signal.SIGKILL)
        for d in self._known_descendants:
            _kill_if_same(*d, signal.SIGKILL)
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

    def _stop_descendants(self, grace: float) -> None:
        alive = [d for d in self._known_descendants if _kill_if_same(*d, signal.SIGTERM)]
        end = time.monotonic() + grace
        while alive and time.monotonic() < end:
            time.sleep(0.1)
            alive = [d for d in alive if _proc_stat(d[0]) is not None]
        for d in alive:
            _kill_if_same(*d, signal.SIGKILL)

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


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on `host` right now (the OS picks it; tiny race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
            text = ANSI_RE.sub("", Path(path).read_text(errors="replace"))
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


# --------------------------------------------------------------------------- flwr config


def flwr_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for every Flower process and CLI call of one test.

    FLWR_HOME holds the CLI's config.toml *and* the apps the SuperLink/SuperNode install from
    FABs (`$FLWR_HOME/apps/<publisher>.<name>.<version>.<hash8>/`), so it must be a tmp dir.
    """
    env = dict(os.environ if base is None else base)
    env.update(FLWR_TEST_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    # Flower's console scripts live next to this interpreter (the project venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    Path(flwr_home).mkdir(parents=True, exist_ok=True)
    return env


def write_flwr_connection(
    flwr_home: Path,
    name: str,
    address: str,
    root_cert: Path | None = None,
    insecure: bool = False,
    default: bool = True,
) -> Path:
    """Write/replace `[superlink.<name>]` in $FLWR_HOME/config.toml (Flower 1.41 schema).

    `root-certificates` must be an absolute path (Flower rejects relative ones).
    """
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        import tomli as tomllib

    if insecure and root_cert is not None:
        raise ValueError("A connection is either insecure or has a root certificate, not both.")
    path = Path(flwr_home) / "config.toml"
    config = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    conn: dict[str, object] = {"address": address}
    if root_cert is not None:
        conn["root-certificates"] = str(Path(root_cert).resolve())
    if insecure:
        conn["insecure"] = True
    superlink[name] = conn
    if default:
        superlink["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))
    return path


def node_config_arg(values: Mapping[str, str | int | float | bool]) -> str:
    """Format `--node-config` / `--run-config` text: `k="v" n=3 flag=true` (TOML values)."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))  # a TOML basic string for ordinary text and paths
        parts.append(f"{key}={text}")
    return " ".join(parts)


# --------------------------------------------------------------------------- flwr CLI


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a short command in its own process group; kill the group if it overruns."""
    with subprocess.Popen(  # noqa: S603 - argv list, no shell
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=str(cwd) if cwd is not None else None,
        start_new_session=True,
    ) as popen:
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.communicate()
            raise TimeoutError(f"{shlex.join(map(str, argv))} took more than {timeout:.0f} s.")
        return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)


def flwr_json(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60.0) -> dict:
    """Run `flwr <args> --format json` and return the JSON, raising on any failure."""
    res = run_command(["flwr", *args, "--format", "json"], env=env, timeout=timeout)
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        data = None
    if res.returncode != 0 or not isinstance(data, dict) or not data.get("success"):
        raise FlowerCliError(
            f"`flwr {shlex.join(args)}` failed (exit {res.returncode}).\n"
            f"stdout: {ANSI_RE.sub('', res.stdout)[-3000:]}\n"
            f"stderr: {ANSI_RE.sub('', res.stderr)[-3000:]}"
        )
    return data


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
        text = run_config if isinstance(run_config, str) else node_config_arg(run_config)
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
    res = run_command(["flwr", "log", str(run_id), connection, "--show"], env=env, timeout=timeout)
    if res.returncode != 0:
        raise FlowerCliError(f"`flwr log {run_id}` failed: {res.stderr[-2000:]}")
    return ANSI_RE.sub("", res.stdout)


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
        argv += ["--node-config", node_config_arg(node_config)]
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
