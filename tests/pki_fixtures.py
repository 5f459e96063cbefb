"""Shared by the PKI tests: one complete PKI (CA, server certificate, one hospital) per module.

Not a test module: the test files import the `pki_dir` fixture and `HOSTS` from here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.ops import pki

HOSTS = ["server.example.org", "10.0.0.5"]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete PKI (CA, server cert, one node) shared by the read-only tests."""
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server_cert(d, hosts=HOSTS)
    pki.create_node_identity(d, "cleveland")
    return d


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
