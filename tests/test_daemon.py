"""The client daemon's supervision decisions: why a SuperNode exited, when to retry, when a refusal is news."""

from __future__ import annotations

import json
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
