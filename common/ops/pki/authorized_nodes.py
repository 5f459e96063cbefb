"""The server's list of hospital keys, `authorized_nodes.json` (site -> public key, fingerprint).

Flower 1.41 has no authorised-keys file any more (`--auth-list-public-keys` is rejected): with
`--enable-supernode-auth` each public key is registered through the Control API. medfed keeps
this file so the server knows which keys to register and the operator knows which key is which
hospital. Keys are checked the way `flwr supernode register` reads them (OpenSSH, NIST curve).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from common.errors import ConfigError, SecurityError
from common.ops.pki.files import ensure_dir, now, write_file

AUTHORIZED_NODES = "authorized_nodes.json"
_NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_SITE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class AuthorizedNode:
    """One entry of authorized_nodes.json."""

    site: str
    public_key: str  # OpenSSH text, e.g. "ecdsa-sha2-nistp384 AAAA... medfed:cleveland"
    fingerprint: str  # "SHA256:..." as `ssh-keygen -lf` prints it
    public_key_path: str
    added: str  # ISO 8601, UTC


def fingerprint(public_key: PublicKeyTypes | bytes | str) -> str:
    """OpenSSH-style SHA-256 fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it).

    Accepts a key object or the OpenSSH public-key text."""
    if isinstance(public_key, (bytes, str)):
        text = public_key.decode() if isinstance(public_key, bytes) else public_key
    else:
        text = public_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
    parts = text.split()
    if len(parts) < 2:
        raise SecurityError(
            f"{text[:40]!r} is not an OpenSSH public key.", "Pass the .pub file written by "
            "`medfed pki node`."
        )
    digest = hashlib.sha256(base64.b64decode(parts[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def check_site(site: str) -> str:
    """A site name becomes a file name and a SuperNode name: keep it to a safe alphabet."""
    if not _SITE_RE.match(site):
        raise ConfigError(
            f"Site name {site!r} is not allowed (it becomes a file name and a SuperNode name).",
            "Use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit, "
            "e.g. --site cleveland.",
        )
    return site


def load_node_public_key(path: Path | str) -> ec.EllipticCurvePublicKey:
    """Load a node public key exactly as `flwr supernode register` does (OpenSSH, NIST EC)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SecurityError(f"Node public key {path} does not exist.", "Check the path.")
    try:
        key = serialization.load_ssh_public_key(path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as err:
        raise SecurityError(
            f"{path} is not an OpenSSH public key: {err}.",
            "Create node keys with `medfed pki node` (ECDSA P-384, OpenSSH format).",
        ) from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, _NIST_CURVES):
        raise SecurityError(
            f"{path} is not a NIST-curve ECDSA key; Flower's SuperNode auth accepts only those.",
            "Create node keys with `medfed pki node` (ECDSA P-384).",
        )
    return key


def load_authorized_nodes(path: Path | str) -> dict[str, AuthorizedNode]:
    """Read authorized_nodes.json ({site: {public-key, fingerprint, public-key-path, added}})."""
    path = Path(path).expanduser()
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("top level is not an object")
        return {
            site: AuthorizedNode(
                site=site,
                public_key=entry["public-key"],
                fingerprint=entry["fingerprint"],
                public_key_path=entry.get("public-key-path", ""),
                added=entry.get("added", ""),
            )
            for site, entry in raw.items()
        }
    except (ValueError, KeyError, TypeError) as err:
        raise SecurityError(
            f"{path} is not a valid medfed authorised-nodes file: {err}.",
            "Restore it from backup, or rebuild it with `medfed pki node --public-key` per site.",
        ) from err


def _save_authorized_nodes(path: Path, nodes: dict[str, AuthorizedNode]) -> None:
    raw = {
        n.site: {
            "public-key": n.public_key,
            "fingerprint": n.fingerprint,
            "public-key-path": n.public_key_path,
            "added": n.added,
        }
        for n in sorted(nodes.values(), key=lambda n: n.site)
    }
    write_file(path, (json.dumps(raw, indent=2) + "\n").encode(), mode=0o644, force=True)


def register_node_public_key(
    dir: Path | str,  # noqa: A002
    site: str,
    public_key: Path | str,
    *,
    force: bool = False,
) -> AuthorizedNode:
    """Record a site's public key in `dir/authorized_nodes.json`.

    Use this when the hospital generated its own key (the private key then never leaves it).
    A site already recorded with a different key needs `force=True` (key rotation); a key
    already used by another site is refused (Flower rejects duplicate keys as well)."""
    check_site(site)
    directory = ensure_dir(Path(dir))
    key = load_node_public_key(public_key)
    fp = fingerprint(key)
    registry = directory / AUTHORIZED_NODES
    nodes = load_authorized_nodes(registry)
    for other in nodes.values():
        if other.fingerprint == fp and other.site != site:
            raise SecurityError(
                f"This public key ({fp}) is already registered for site {other.site!r}.",
                "Each hospital needs its own key: create one with `medfed pki node --site "
                f"{site}`.",
            )
    old = nodes.get(site)
    if old is not None and old.fingerprint != fp and not force:
        raise SecurityError(
            f"Site {site!r} is already registered with another key ({old.fingerprint}).",
            "Pass --force to replace it (key rotation), then unregister the old key on the "
            "server (see 'Rotating a key' in docs/DEPLOY.md).",
        )
    text = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    entry = AuthorizedNode(
        site=site,
        public_key=f"{text.decode()} medfed:{site}",
        fingerprint=fp,
        public_key_path=str(Path(public_key).expanduser().resolve()),
        added=old.added if old is not None and old.fingerprint == fp else now().isoformat(),
    )
    nodes[site] = entry
    _save_authorized_nodes(registry, nodes)
    return entry
