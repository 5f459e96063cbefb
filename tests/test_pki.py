"""The consortium PKI: certificates verify, keys are private, Flower accepts what we write."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import typer
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from common import pki
from common.cli_pki import pki_app
from common.errors import ConfigError, SecurityError

HOSTS = ["server.example.org", "10.0.0.5"]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete PKI (CA, server cert, one node) shared by the read-only tests."""
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server_cert(d, hosts=HOSTS)
    pki.create_node_identity(d, "cleveland")
    return d


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ----------------------------------------------------------------------------- certificates


def test_server_cert_chains_to_ca_with_sans_and_eku(pki_dir: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((pki_dir / "server.pem").read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert "server.example.org" in dns and "localhost" in dns
    assert {"10.0.0.5", "127.0.0.1", "::1"} <= ips  # IPs are IPAddress SANs, not DNSName
    assert "10.0.0.5" not in dns

    for host in ["server.example.org", "10.0.0.5", "127.0.0.1", "localhost"]:
        pki.verify_server_cert(pki_dir / "ca.pem", pki_dir / "server.pem", host)
    ca_bytes, cert_text = (pki_dir / "ca.pem").read_bytes(), (pki_dir / "server.pem").read_text()
    pki.verify_server_cert(ca_bytes, cert_text, "::1")  # PEM content works as well as paths


def test_verify_rejects_wrong_host_and_foreign_ca(pki_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="evil.example.org"):
        pki.verify_server_cert(pki_dir / "ca.pem", pki_dir / "server.pem", "evil.example.org")
    other = pki.init_ca(tmp_path / "other")
    with pytest.raises(SecurityError, match="does not verify"):
        pki.verify_server_cert(other.cert, pki_dir / "server.pem", "server.example.org")


def test_verify_rejects_a_cert_without_server_auth(pki_dir: Path) -> None:
    """The CA certificate itself chains to the CA but is not a TLS server certificate."""
    with pytest.raises(SecurityError):
        pki.verify_server_cert(pki_dir / "ca.pem", pki_dir / "ca.pem", "127.0.0.1")


def test_loopback_sans_can_be_left_out(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    paths = pki.issue_server_cert(tmp_path, hosts=["server.example.org"], include_loopback=False)
    assert paths.hosts == ("server.example.org",)
    with pytest.raises(SecurityError):
        pki.verify_server_cert(tmp_path / "ca.pem", paths.cert, "127.0.0.1")


@pytest.mark.parametrize("host", ["https://server.example.org", "server.example.org:9092", "", "a b"])
def test_bad_host_is_a_config_error(tmp_path: Path, host: str) -> None:
    pki.init_ca(tmp_path)
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        pki.issue_server_cert(tmp_path, hosts=[host])
    assert not (tmp_path / "server.key").exists()


def test_server_cert_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="medfed pki init"):
        pki.issue_server_cert(tmp_path, hosts=["localhost"])


# ----------------------------------------------------------------------------- key files


def test_private_keys_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ca = pki.init_ca(tmp_path)
        server = pki.issue_server_cert(tmp_path, hosts=["localhost"])
        node = pki.create_node_identity(tmp_path, "hungary")
    finally:
        os.umask(old)
    for key in (ca.key, server.key, node.private_key):
        assert key is not None and _mode(key) == 0o600, key
    for public in (ca.cert, server.cert, node.public_key, node.registry):
        assert _mode(public) == 0o644, public
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_existing_keys_are_never_overwritten_without_force(tmp_path: Path) -> None:
    ca = pki.init_ca(tmp_path)
    server = pki.issue_server_cert(tmp_path, hosts=["localhost"])
    node = pki.create_node_identity(tmp_path, "va")
    assert node.private_key is not None
    before = {p: p.read_bytes() for p in (ca.key, ca.cert, server.key, server.cert, node.private_key)}

    with pytest.raises(SecurityError, match="--force"):
        pki.init_ca(tmp_path)
    with pytest.raises(SecurityError, match="--force"):
        pki.issue_server_cert(tmp_path, hosts=["localhost"])
    with pytest.raises(SecurityError, match="--force"):
        pki.create_node_identity(tmp_path, "va")
    assert {p: p.read_bytes() for p in before} == before


def test_force_replaces_keys_and_keeps_them_private(tmp_path: Path) -> None:
    ca = pki.init_ca(tmp_path)
    server = pki.issue_server_cert(tmp_path, hosts=["localhost"])
    node = pki.create_node_identity(tmp_path, "va")
    assert node.private_key is not None
    old_ca, old_server = ca.key.read_bytes(), server.key.read_bytes()
    old_node = node.private_key.read_bytes()

    pki.init_ca(tmp_path, force=True)
    pki.issue_server_cert(tmp_path, hosts=["localhost"], force=True)
    rotated = pki.create_node_identity(tmp_path, "va", force=True)

    assert ca.key.read_bytes() != old_ca
    assert server.key.read_bytes() != old_server
    assert node.private_key.read_bytes() != old_node
    assert all(_mode(p) == 0o600 for p in (ca.key, server.key, node.private_key))
    pki.verify_server_cert(ca.cert, server.cert, "localhost")  # new cert chains to the new CA
    assert pki.load_authorized_nodes(rotated.registry)["va"].fingerprint == rotated.fingerprint
    assert rotated.fingerprint != node.fingerprint


# ----------------------------------------------------------------------------- node identities


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


def test_authorized_nodes_json_records_site_key_and_fingerprint(pki_dir: Path) -> None:
    raw = json.loads((pki_dir / "authorized_nodes.json").read_text())
    entry = raw["cleveland"]
    pub_text = (pki_dir / "cleveland.pub").read_text().split()
    assert entry["public-key"].split()[:2] == pub_text[:2]
    assert entry["public-key"].startswith("ecdsa-sha2-nistp384 ")
    assert entry["fingerprint"].startswith("SHA256:") and len(entry["fingerprint"]) == 50
    assert Path(entry["public-key-path"]) == (pki_dir / "cleveland.pub").resolve()
    assert pki.fingerprint(entry["public-key"]) == entry["fingerprint"]


def test_fingerprint_matches_ssh_keygen(pki_dir: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pki_dir / "cleveland.pub")],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout
    assert out.split()[1] == pki.fingerprint((pki_dir / "cleveland.pub").read_text())


def test_site_generated_key_is_recorded_and_duplicates_refused(tmp_path: Path) -> None:
    server_side, hospital = tmp_path / "operator", tmp_path / "hospital"
    made_at_site = pki.create_node_identity(hospital, "hungary")
    entry = pki.register_node_public_key(server_side, "hungary", made_at_site.public_key)
    assert entry.fingerprint == made_at_site.fingerprint
    assert not (server_side / "hungary.key").exists()  # the private key never travelled
    # Re-recording the same key is idempotent; another site may not reuse it.
    pki.register_node_public_key(server_side, "hungary", made_at_site.public_key)
    with pytest.raises(SecurityError, match="already registered for site 'hungary'"):
        pki.register_node_public_key(server_side, "va", made_at_site.public_key)
    # A different key for the same site is a rotation: it needs force.
    new = pki.create_node_identity(tmp_path / "new", "hungary")
    with pytest.raises(SecurityError, match="--force"):
        pki.register_node_public_key(server_side, "hungary", new.public_key)
    pki.register_node_public_key(server_side, "hungary", new.public_key, force=True)
    recorded = pki.load_authorized_nodes(server_side / "authorized_nodes.json")
    assert recorded["hungary"].fingerprint == new.fingerprint


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


@pytest.mark.parametrize("site", ["Cleveland", "../etc", "", "a b", "x" * 64])
def test_bad_site_names_are_refused(tmp_path: Path, site: str) -> None:
    with pytest.raises(ConfigError, match="Site name"):
        pki.create_node_identity(tmp_path, site)


def test_corrupt_registry_is_a_security_error(tmp_path: Path) -> None:
    (tmp_path / "authorized_nodes.json").write_text("[1, 2]")
    with pytest.raises(SecurityError, match="not a valid medfed authorised-nodes file"):
        pki.load_authorized_nodes(tmp_path / "authorized_nodes.json")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture()
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(pki_app, name="pki")
    return app


def test_cli_init_server_node_list(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "pki")

    r = runner.invoke(cli, ["pki", "init", "--dir", d])
    assert r.exit_code == 0, r.output
    assert "ca.pem" in r.output and "every hospital" in r.output and "Never copy" in r.output

    r = runner.invoke(cli, ["pki", "init", "--dir", d])
    assert r.exit_code == SecurityError.exit_code and "--force" in r.output
    assert "Traceback" not in r.output

    r = runner.invoke(
        cli, ["pki", "server", "--dir", d, "--host", "server.example.org", "--host", "10.0.0.5"]
    )
    assert r.exit_code == 0, r.output
    assert "server.example.org, 10.0.0.5, 127.0.0.1" in r.output

    node_args = ["pki", "node", "--dir", d, "--site", "cleveland", "--out", str(tmp_path / "site")]
    r = runner.invoke(cli, node_args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "site" / "cleveland.key").is_file()
    assert "It never goes to the server" in r.output and "authorized_nodes.json" in r.output

    r = runner.invoke(cli, node_args)
    assert r.exit_code == SecurityError.exit_code
    r = runner.invoke(cli, [*node_args, "--force"])
    assert r.exit_code == 0, r.output

    pki.create_node_identity(tmp_path / "hungary-machine", "hungary")
    pub = str(tmp_path / "hungary-machine" / "hungary.pub")
    r = runner.invoke(cli, ["pki", "node", "--dir", d, "--site", "hungary", "--public-key", pub])
    assert r.exit_code == 0, r.output
    assert "fingerprint SHA256:" in r.output

    r = runner.invoke(cli, ["pki", "node", "--dir", d, "--site", "Bad Name"])
    assert r.exit_code == ConfigError.exit_code

    r = runner.invoke(cli, ["pki", "list", "--dir", d])
    assert r.exit_code == 0, r.output
    assert "Hospitals (2)" in r.output and "cleveland" in r.output and "hungary" in r.output
    assert "chain: signed by this CA" in r.output

    r = runner.invoke(cli, ["pki", "list", "--dir", str(tmp_path / "nowhere")])
    assert r.exit_code == SecurityError.exit_code


# ----------------------------------------------------------------------------- real TLS


@pytest.fixture()
def tls_server(pki_dir: Path) -> Iterator[int]:
    """A tiny TLS echo server on 127.0.0.1 presenting server.pem; yields its port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki_dir / "server.pem", pki_dir / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(tls.recv(64))
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _handshake(port: int, ctx: ssl.SSLContext, server_hostname: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"ping")
            return tls.recv(64)


def test_tls_handshake_succeeds_with_the_ca_and_fails_without(pki_dir: Path, tls_server: int) -> None:
    trusted = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    assert _handshake(tls_server, trusted, "127.0.0.1") == b"ping"
    assert _handshake(tls_server, trusted, "localhost") == b"ping"

    no_ca = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but trusts nothing
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_server, no_ca, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):  # right CA, wrong name
        _handshake(tls_server, trusted, "evil.example.org")


# ----------------------------------------------------------------------------- real Flower


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr")}
    (tmp_path / "flwr").mkdir()
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
             "--port", str(_free_port()), "--max-retries", "2", "--max-wait-time", "20"],
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
