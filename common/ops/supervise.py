"""Running Flower's long-lived processes (SuperLink, SuperNode) under a medfed command.

Why not just `exec` them: medfed checks the configuration first, tees the Flower output into
a log file *and* stdout (journald), reacts to what the process says (ready, connected,
refused) and, on SIGTERM, stops the whole process tree. Flower's SuperLink starts its
SuperExec in a session of its own, outside the SuperLink's process group, so a group signal
alone would leave it behind: descendants are snapshotted from /proc and stopped one by one by
PID (with a start-time check against PID reuse). Nothing is ever matched by name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
MAX_LOG_BYTES = 50_000_000  # a log above this is moved to <name>.1 when the next start opens it

#: Environment every Flower process gets unless the operator set the variable already:
#: no telemetry, no update check (network calls home), quicker task pick-up by the SuperExec.
FLOWER_ENV_DEFAULTS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
    "PYTHONUNBUFFERED": "1",
}


def strip_ansi(text: str) -> str:
    """Flower colours its log lines whatever the terminal; logs and parsers want plain text."""
    return ANSI_RE.sub("", text)


def flower_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Flower process: ours (MEDFED_DATA_DIR included), FLWR_HOME set,
    the defaults above, and this interpreter's bin folder first on PATH (Flower's scripts)."""
    env = dict(os.environ if base is None else base)
    for key, value in FLOWER_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env["FLWR_HOME"] = str(flwr_home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    Path(flwr_home).mkdir(parents=True, exist_ok=True, mode=0o700)
    return env


def flower_bin(name: str) -> str:
    """Path of a Flower console script, preferring the one next to this interpreter."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name) or name


class LogSink:
    """Lines to a log file (append, flushed per line) and to stdout, from several threads."""

    def __init__(self, path: Path, *, echo: bool = True, prefix: str = "medfed") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > MAX_LOG_BYTES:  # keep one old log at start
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self.echo = echo
        self.prefix = prefix
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, line: str) -> None:
        """One line as it came from a child process (colours stripped)."""
        line = strip_ansi(line.rstrip("\n"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if self.echo:
                try:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except (OSError, ValueError):  # stdout closed (e.g. detached): the file still has it
                    pass

    def say(self, message: str) -> None:
        """One of medfed's own lines: timestamped and prefixed so `status` can parse it."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        for line in message.splitlines() or [""]:
            self.write(f"{stamp} {self.prefix}: {line}")

    def close(self) -> None:
        with self._lock:
            self._file.close()


# --------------------------------------------------------------------------- process tree


def proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, starttime) of a live, non-zombie process, from /proc; None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def descendants(root: int) -> set[tuple[int, int]]:
    """Every live descendant of `root` as (pid, starttime)."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return set()
    for name in entries:
        stat = proc_stat(int(name))
        if stat is not None:
            children.setdefault(stat[0], []).append((int(name), stat[2]))
    found: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child[0])
    return found


def signal_if_same(pid: int, starttime: int, sig: int) -> bool:
    """Signal `pid` (its whole group if it leads one) only if it is still the process that
    started at `starttime`: a PID reused meanwhile is left alone."""
    stat = proc_stat(pid)
    if stat is None or stat[2] != starttime:
        return False
    try:
        if stat[1] == pid:  # leads its own group (setsid): take the group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_processes(processes: Iterable[tuple[int, int]], grace: float) -> None:
    """SIGTERM each (pid, starttime) that is still that process; SIGKILL whatever is left
    after `grace` s. For descendants that escaped their parent's process group."""
    alive = [d for d in processes if signal_if_same(*d, signal.SIGTERM)]
    end = time.monotonic() + grace
    while alive and time.monotonic() < end:
        time.sleep(0.1)
        alive = [d for d in alive if proc_stat(d[0]) is not None]
    for d in alive:
        signal_if_same(*d, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    return proc_stat(pid) is not None


class Child:
    """A supervised child process: own session, output teed to a `LogSink`, clean stop.

    `on_line` is called (in the reader thread) with every colour-stripped output line, so the
    supervisor can react to "ready" or "refused" messages without re-reading the log.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        sink: LogSink,
        env: Mapping[str, str],
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        keep_lines: int = 80,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.sink = sink
        self.on_line = on_line
        self.recent: deque[str] = deque(maxlen=keep_lines)
        self.popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._known: set[tuple[int, int]] = set()
        self._stop_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"tee-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = strip_ansi(raw.decode("utf-8", errors="replace").rstrip("\n"))
            self.recent.append(line)
            self.sink.write(line)
            if self.on_line is not None:
                try:
                    self.on_line(line)
                except Exception as err:  # noqa: BLE001 - a parser bug must not kill the tee
                    self.sink.say(f"internal error while reading output: {err!r}")
        self.popen.stdout.close()

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def running(self) -> bool:
        return self.popen.poll() is None

    def remember_descendants(self) -> None:
        """Snapshot the tree now, so children that leave our group can be stopped later."""
        if self.running():
            self._known |= descendants(self.pid)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)  # let the last lines reach the log
        return code

    def tail(self, lines: int = 30) -> str:
        return "\n".join(list(self.recent)[-lines:])

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the group, SIGKILL after `grace` s; then stop escaped descendants."""
        with self._stop_lock:
            self.remember_descendants()
            if self.running():
                self._killpg(signal.SIGTERM)
                if self.wait(grace) is None:
                    self._killpg(signal.SIGKILL)
                    self.wait(10)
            self._killpg(signal.SIGKILL)  # members left behind by a leader that exited first
            stop_processes(self._known, grace)
            self._reader.join(timeout=5)
            return self.popen.returncode

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class StopFlag:
    """SIGTERM/SIGINT -> an event the supervision loop waits on (handlers only set it)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, _frame: object) -> None:
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


def exit_status(returncode: int | None) -> int:
    """A shell-style exit status for a child's return code (killed by signal N -> 128 + N)."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode
