"""A hospital's node identity (common/ops/pki/node_identity.py): Flower loads and accepts the keys we
write, and the site-side check catches loose modes and mismatched pairs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from client.daemon.supervisor import free_port
from common.errors import SecurityError
from common.ops import pki
from common.ops.supervise import flower_env
from tests.pki_fixtures import pki_dir  # noqa: F401 - pki_dir is a fixture


def test_node_keys_load_with_flowers_own_loaders(pki_dir: Path) -> None:
    """What flower-supernode signs with must be what `flwr supernode register` stores."""
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes
    from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

    args = argparse.Namespace(
        auth_supernode_private_key=str(pki_dir / "cleveland.key"), auth_supernode_public_key=None
    )
    loaded = _try_setup_client_authentication(args)
    assert loaded is not None
    private_key, public_key = loaded
    registered = try_load_public_key(pki_dir / "cleveland.pub")
    assert registered == public_key_to_bytes(public_key)
    assert private_key.curve.name == "secp384r1"
    assert pki.fingerprint(public_key) == pki.load_authorized_nodes(
        pki_dir / "authorized_nodes.json"
    )["cleveland"].fingerprint


def test_check_node_identity_catches_loose_modes_and_mismatched_pairs(tmp_path: Path) -> None:
    a = pki.create_node_identity(tmp_path, "cleveland")
    b = pki.create_node_identity(tmp_path, "va")
    assert a.private_key is not None
    assert pki.check_node_identity(a.private_key, a.public_key) == a.fingerprint
    with pytest.raises(SecurityError, match="not the public half"):
        pki.check_node_identity(a.private_key, b.public_key)
    a.private_key.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        pki.check_node_identity(a.private_key)
    with pytest.raises(SecurityError, match="does not exist"):
        pki.check_node_identity(tmp_path / "missing.key")


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} not installed next to {sys.executable}")
    return str(path)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started (SuperLink/SuperNode spawn a SuperExec child)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_flower_superlink_accepts_registered_node_key_only(tmp_path: Path) -> None:
    """SuperLink with our TLS files and --enable-supernode-auth; the registered node comes
    online, a node with an unregistered key is refused."""
    d = tmp_path / "pki"
    pki.init_ca(d)
    pki.issue_server_cert(d, hosts=["localhost"])
    good = pki.create_node_identity(d, "cleveland")
    stranger = pki.create_node_identity(tmp_path / "elsewhere", "mallory")
    port = free_port()
    env = flower_env(tmp_path / "flwr")  # FLWR_HOME, and this interpreter's bin first on PATH (flower-superexec)
    (tmp_path / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "medfed"\n\n[superlink.medfed]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{d / "ca.pem"}"\n'
    )
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def spawn(args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(tmp_path / log, "wb")  # noqa: SIM115 - closed in the finally below
        logs.append(out)
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        procs.append(proc)
        return proc

    def flwr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_bin("flwr"), *args], capture_output=True, text=True, env=env, timeout=60)

    def node(key: Path, log: str) -> subprocess.Popen[bytes]:
        return spawn(
            [_bin("flower-supernode"), "--superlink", f"127.0.0.1:{port}",
             "--root-certificates", str(d / "ca.pem"), "--auth-supernode-private-key", str(key),
             "--port", str(free_port()), "--max-retries", "2", "--max-wait-time", "20"],
            log,
        )

    try:
        link = spawn(
            [_bin("flower-superlink"), "--ssl-ca-certfile", str(d / "ca.pem"),
             "--ssl-certfile", str(d / "server.pem"), "--ssl-keyfile", str(d / "server.key"),
             "--enable-supernode-auth", "--database", str(tmp_path / "state.db"),
             "--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(port)],
            "superlink.log",
        )
        trusted = ssl.create_default_context(cafile=str(d / "ca.pem"))
        deadline = time.monotonic() + 120
        while True:  # wait until the SuperLink answers TLS with our certificate
            assert link.poll() is None, (tmp_path / "superlink.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    trusted.wrap_socket(raw, server_hostname="localhost").close()
                break
            except OSError:
                assert time.monotonic() < deadline, "SuperLink did not start"
                time.sleep(0.5)

        reg = flwr(
            "supernode", "register", str(good.public_key), "--name", "cleveland", "--format", "json"
        )
        assert reg.returncode == 0, reg.stdout + reg.stderr
        assert json.loads(reg.stdout[reg.stdout.index("{"):])["success"] is True

        assert stranger.private_key is not None and good.private_key is not None
        refused = node(stranger.private_key, "stranger.log")
        node(good.private_key, "supernode.log")
        deadline = time.monotonic() + 120
        while True:
            listed = flwr("supernode", "list", "--format", "json")
            out = listed.stdout
            if '"online"' in out:
                break
            assert time.monotonic() < deadline, out + (tmp_path / "supernode.log").read_text()
            time.sleep(1)
        assert refused.wait(timeout=120) != 0, "an unregistered SuperNode key was accepted"
        assert "Failed to activate SuperNode" in (tmp_path / "stranger.log").read_text()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log_file in logs:
            log_file.close()
