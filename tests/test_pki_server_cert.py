"""The server certificate (common/ops/pki/server_cert.py): chains to the CA, names the right hosts,
and a real TLS handshake succeeds with the CA and fails without it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.ops import pki
from common.errors import ConfigError, SecurityError
from tests.pki_fixtures import pki_dir  # noqa: F401 - pki_dir is a fixture


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
