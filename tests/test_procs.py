"""Fast tests of the multi-process harness (tests/procs.py) itself: no Flower federation here.

What must hold for the federation tests to be safe: a process never outlives its deadline or
its `ProcessGroup`, children that escaped into their own session (as the SuperLink's SuperExec
does) are stopped too, waits fail cleanly, and the `flwr` config/JSON helpers match Flower.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs  # noqa: E402

from client.daemon.supervisor import free_port, node_config_text  # noqa: E402
from common.ops.supervise import flower_env, proc_stat  # noqa: E402
from server.deploy.flwr_cli import write_connection  # noqa: E402

PY = sys.executable


def _alive(pid: int) -> bool:
    return proc_stat(pid) is not None


def _wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_child_is_killed_at_its_hard_deadline(tmp_path: Path) -> None:
    with procs.ProcessGroup(tmp_path) as group:
        proc = group.start(["sleep", "30"], name="sleeper", lifetime=0.5)
        started = time.monotonic()
        proc.wait(timeout=5)
        assert time.monotonic() - started < 4
        assert proc.deadline_exceeded
        assert proc.returncode == -15  # SIGTERM to the group at the deadline
        assert "hard deadline reached" in proc.log_text()


def test_context_exit_stops_children_and_escaped_grandchildren(tmp_path: Path) -> None:
    # The parent starts one grandchild in its own group and one in a new session (like the
    # SuperLink's SuperExec): killpg alone would miss the second one.
    script = (
        "import subprocess, sys, time\n"
        "a = subprocess.Popen(['sleep', '60'])\n"
        "b = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "print(a.pid, b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with procs.ProcessGroup(tmp_path) as group:
        proc = group.start([PY, "-c", script], name="tree", lifetime=60)
        match = procs.wait_for_log(proc.log_path, r"^(\d+) (\d+)$", timeout=10, proc=proc)
        same_group, own_session = int(match.group(1)), int(match.group(2))
        assert os.getpgid(own_session) != proc.pgid
        assert all(_alive(p) for p in (proc.pid, same_group, own_session))
    assert _wait_gone([proc.pid, same_group, own_session]) == []
    assert not proc.deadline_exceeded


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with procs.ProcessGroup(tmp_path) as group:
        proc = group.start([PY, "-c", script], name="stubborn", lifetime=60)
        procs.wait_for_log(proc.log_path, "ready", timeout=10, proc=proc)
        started = time.monotonic()
        assert proc.stop(grace=0.5) == -9
        assert time.monotonic() - started < 3
        assert proc.stop() == -9  # idempotent


def test_stop_all_stops_group_members_in_parallel(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.0), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    group = procs.ProcessGroup(tmp_path)
    members = [group.start([PY, "-c", script], name=f"slowstop{i}", lifetime=60) for i in range(4)]
    for proc in members:
        procs.wait_for_log(proc.log_path, "ready", timeout=10, proc=proc)
    started = time.monotonic()
    group.stop_all()
    assert time.monotonic() - started < 3.5  # 4 x 1 s shutdowns, overlapping
    assert [p.returncode for p in members] == [0, 0, 0, 0]


def test_leftover_process_is_stopped_when_the_interpreter_exits(tmp_path: Path) -> None:
    script = (
        f"import sys; sys.path.insert(0, {str(Path(procs.__file__).parent)!r})\n"
        "import procs\n"
        f"p = procs.ProcessGroup({str(tmp_path)!r}).start(['sleep', '60'], name='orphan', lifetime=60)\n"
        "print(p.pid, flush=True)\n"
    )
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert _wait_gone([int(out.stdout.split()[0])]) == []


def test_wait_for_port_times_out_cleanly() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        procs.wait_for_port(procs.LOCALHOST, port, timeout=0.5)
    assert time.monotonic() - started < 2.5


def test_wait_until_returns_times_out_and_fails_fast_when_a_process_dies(tmp_path: Path) -> None:
    calls = iter([False, False, True])
    procs.wait_until(lambda: next(calls), "the third call", timeout=5, interval=0.01)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="Still waiting for nothing after 0 s"):
        procs.wait_until(lambda: False, "nothing", timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 2.0
    with procs.ProcessGroup(tmp_path / "logs") as group:
        short = group.start([sys.executable, "-c", "print('bye')"], name="short", lifetime=30)
        short.wait(timeout=20)
        with pytest.raises(RuntimeError, match="short exited with code 0 while waiting for a file"):
            procs.wait_until(lambda: False, "a file", timeout=30, procs=[short])


def test_wait_for_port_sees_a_listener_and_fails_fast_when_the_process_dies(
    tmp_path: Path,
) -> None:
    port = free_port()
    listen = (
        "import socket, time\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)\n"
    )
    with procs.ProcessGroup(tmp_path) as group:
        server = group.start([PY, "-c", listen], name="listener", lifetime=60)
        procs.wait_for_port(procs.LOCALHOST, port, timeout=10, proc=server)
        dying = group.start([PY, "-c", "raise SystemExit(3)"], name="dying", lifetime=60)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited with code 3"):
            procs.wait_for_port(procs.LOCALHOST, free_port(), timeout=30, proc=dying)
        assert time.monotonic() - started < 10


def test_wait_for_log_ignores_ansi_colours_and_times_out(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\x1b[92mINFO \x1b[0m:      SuperNode ID: 1234\n")
    assert procs.wait_for_log(log, r"INFO :\s+SuperNode ID: (\d+)", 1).group(1) == "1234"
    with pytest.raises(TimeoutError, match="not found"):
        procs.wait_for_log(log, "never printed", 0.3)


def test_run_command_kills_an_overrunning_command() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="more than"):
        procs.run_command(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 5


def test_flwr_connection_is_read_back_by_flower(tmp_path: Path, monkeypatch) -> None:
    from flwr.cli.flower_config import read_superlink_connection

    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here")
    home = tmp_path / "flwr"
    write_connection(home, "tls", "127.0.0.1:9999", root_cert=ca, insecure=False)
    write_connection(home, "plain", "127.0.0.1:9998", root_cert=None, insecure=True, default=False)
    monkeypatch.setenv("FLWR_HOME", str(home))
    tls = read_superlink_connection("tls")
    assert (tls.address, tls.root_certificates, tls.insecure) == ("127.0.0.1:9999", str(ca), False)
    plain = read_superlink_connection("plain")
    assert (plain.address, plain.root_certificates, plain.insecure) == ("127.0.0.1:9998", None, True)
    assert read_superlink_connection(None).name == "tls"  # the default


def test_node_config_text_is_parsed_by_flower() -> None:
    from flwr.common.config import parse_config_args

    values = {"site": "a", "data-path": "/data/site a/x.csv", "num": 3, "lr": 0.5, "dp": True}
    assert parse_config_args([node_config_text(values)]) == values


def test_flwr_json_failure_is_an_error_although_flwr_exits_0(tmp_path: Path) -> None:
    env = flower_env(tmp_path / "flwr")
    write_connection(tmp_path / "flwr", "gone", f"127.0.0.1:{free_port()}", root_cert=None, insecure=True)
    raw = procs.run_command(["flwr", "ls", "gone", "--format", "json"], env=env, timeout=60)
    assert raw.returncode == 0 and '"success": false' in raw.stdout  # Flower's behaviour
    with pytest.raises(procs.FlowerCliError, match="unavailable"):
        procs.list_runs("gone", env=env)
