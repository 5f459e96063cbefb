"""The client daemon's supervision decisions: why a SuperNode exited, when to retry, when a refusal is news."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

from client.daemon import supervisor as daemon
from client.daemon.site_config import load_site_config
from common.ops import pki
from common.errors import ConfigError, SecurityError
from tests.deploy_files import pki_dir, site_toml  # noqa: F401 - pki_dir is a fixture


def test_exit_classification(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    refused = "ERROR :     Exit Code: 305\nFailed to initialize the connection to the SuperLink.\n[code: 2004] Failed to activate SuperNode."
    reason = daemon.classify_exit(1, refused, cfg)
    assert reason.refused and isinstance(reason.fatal, SecurityError)
    tls = "ERROR :     SSL/TLS handshake error detected.\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    assert isinstance(daemon.classify_exit(1, tls, cfg).fatal, SecurityError)
    assert isinstance(daemon.classify_exit(1, "OSError: [Errno 98] Address already in use", cfg).fatal, ConfigError)
    away = ("WARNING :   Giving up reconnection after 5.00 seconds and 6 tries.\nERROR :     Exit Code: 305\n"
            "Failed to initialize the connection to the SuperLink.\n[Errno 111] Connection refused\n")
    reason = daemon.classify_exit(1, away, cfg)
    assert reason.fatal is None and "unreachable ([Errno 111] Connection refused)" in reason.text
    assert daemon.classify_exit(0, "", cfg).fatal is None
    delays = [daemon.backoff_delay(n) for n in range(1, 12)]
    assert all(daemon.MIN_BACKOFF_S <= d <= daemon.MAX_BACKOFF_S for d in delays)
    assert delays[0] < 3 and delays[-1] >= 0.8 * daemon.MAX_BACKOFF_S


def test_a_refusal_is_news_only_for_a_key_never_activated_here(tmp_path: Path, pki_dir: Path) -> None:
    from common.ops.supervise import LogSink, StopFlag

    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    cfg.state_dir.mkdir(parents=True)
    sink = LogSink(tmp_path / "client.log", echo=False)
    sup = daemon.Supervisor(cfg, sink, StopFlag())
    assert not sup.activated_before()  # a refusal now means: not registered -> exit 7
    sup.record_activation("42")
    assert sup.activated_before()  # a refusal now is most likely a server restart -> retry
    assert json.loads((cfg.state_dir / "node-identity.json").read_text())["node-id"] == "42"
    other = pki.create_node_identity(tmp_path / "other", "cleveland")
    sup.fingerprint = other.fingerprint  # the site got a new key: its first refusal is news again
    assert not sup.activated_before()
    sink.close()


def _serve_once(listener: socket.socket, tls: ssl.SSLContext | None) -> None:
    conn, _ = listener.accept()
    with conn:
        if tls is not None:
            try:
                tls.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                pass


def test_an_insecure_site_learns_from_a_handshake_that_the_server_speaks_tls(pki_dir: Path) -> None:
    """The hint rests on a TLS handshake, not on the wording of Flower's HTTP error."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki_dir / "server.pem", pki_dir / "server.key")
    for context, expected in ((tls, True), (None, False)):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            server = threading.Thread(target=_serve_once, args=(listener, context), daemon=True)
            server.start()
            assert daemon.server_speaks_tls(f"127.0.0.1:{listener.getsockname()[1]}", timeout=10) is expected
            server.join(timeout=10)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        closed_port = listener.getsockname()[1]
    assert daemon.server_speaks_tls(f"127.0.0.1:{closed_port}", timeout=2) is False
    assert daemon.server_speaks_tls("no-port-here") is False
