"""The server's authorized_nodes.json (common/ops/pki/authorized_nodes.py): what is recorded per site,
fingerprints as ssh-keygen prints them, duplicates and bad names refused, corruption is an error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from common.ops import pki
from common.errors import ConfigError, SecurityError
from tests.pki_fixtures import pki_dir  # noqa: F401 - pki_dir is a fixture


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


@pytest.mark.parametrize("site", ["Cleveland", "../etc", "", "a b", "x" * 64])
def test_bad_site_names_are_refused(tmp_path: Path, site: str) -> None:
    with pytest.raises(ConfigError, match="Site name"):
        pki.create_node_identity(tmp_path, site)


def test_corrupt_registry_is_a_security_error(tmp_path: Path) -> None:
    (tmp_path / "authorized_nodes.json").write_text("[1, 2]")
    with pytest.raises(SecurityError, match="not a valid medfed authorised-nodes file"):
        pki.load_authorized_nodes(tmp_path / "authorized_nodes.json")
