"""How the PKI writes keys (common/ops/pki/files.py): private keys are 0600 whatever the umask, never
replaced without force, and force rotates them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.ops import pki
from common.errors import SecurityError
from tests.pki_fixtures import file_mode


def test_private_keys_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ca = pki.init_ca(tmp_path)
        server = pki.issue_server_cert(tmp_path, hosts=["localhost"])
        node = pki.create_node_identity(tmp_path, "hungary")
    finally:
        os.umask(old)
    for key in (ca.key, server.key, node.private_key):
        assert key is not None and file_mode(key) == 0o600, key
    for public in (ca.cert, server.cert, node.public_key, node.registry):
        assert file_mode(public) == 0o644, public
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
    assert all(file_mode(p) == 0o600 for p in (ca.key, server.key, node.private_key))
    pki.verify_server_cert(ca.cert, server.cert, "localhost")  # new cert chains to the new CA
    assert pki.load_authorized_nodes(rotated.registry)["va"].fingerprint == rotated.fingerprint
    assert rotated.fingerprint != node.fingerprint
