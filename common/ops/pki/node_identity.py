"""A hospital's SuperNode identity: an ECDSA P-384 key pair in OpenSSH format.

`flower-supernode --auth-supernode-private-key` reads the key with `load_ssh_private_key` and
requires an EC key, so that is what is written here and what the site checks before starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.errors import SecurityError
from common.ops.pki.authorized_nodes import (
    AUTHORIZED_NODES,
    check_site,
    fingerprint,
    load_authorized_nodes,
    load_node_public_key,
    register_node_public_key,
)
from common.ops.pki.files import CURVE, ensure_dir, exists_error, write_file


@dataclass(frozen=True)
class NodeKeyPaths:
    site: str
    private_key: Path | None  # None when only an existing public key was recorded
    public_key: Path
    fingerprint: str
    registry: Path  # the authorized_nodes.json the public key was recorded in


def create_node_identity(
    dir: Path | str,  # noqa: A002
    site: str,
    *,
    out: Path | str | None = None,
    force: bool = False,
) -> NodeKeyPaths:
    """Create a site's SuperNode key pair and record its public key in `dir/authorized_nodes.json`.

    Writes `<out>/<site>.key` (OpenSSH private key, 0600: it stays at the hospital) and
    `<out>/<site>.pub` (OpenSSH public key). `out` defaults to `dir`."""
    check_site(site)
    directory = ensure_dir(Path(dir))
    out_dir = ensure_dir(Path(out)) if out is not None else directory
    priv_path, pub_path = out_dir / f"{site}.key", out_dir / f"{site}.pub"
    if priv_path.exists() and not force:
        raise exists_error(priv_path)
    registry = directory / AUTHORIZED_NODES
    old = load_authorized_nodes(registry).get(site)
    if old is not None and not force:
        raise SecurityError(
            f"Site {site!r} already has a registered key ({old.fingerprint}) in {registry}.",
            "Pass --force to rotate it (then unregister the old key on the server, see "
            "'Rotating a key' in docs/DEPLOY.md).",
        )

    key = ec.generate_private_key(CURVE())
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_bytes = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_file(priv_path, private_bytes, mode=0o600, force=force)
    write_file(pub_path, public_bytes + f" medfed:{site}\n".encode(), mode=0o644, force=True)
    entry = register_node_public_key(directory, site, pub_path, force=True)
    return NodeKeyPaths(
        site=site,
        private_key=priv_path,
        public_key=pub_path,
        fingerprint=entry.fingerprint,
        registry=registry,
    )


def check_node_identity(private_key: Path | str, public_key: Path | str | None = None) -> str:
    """Check a site's identity files before starting the SuperNode; return the fingerprint.

    Loads the private key the way `flower-supernode --auth-supernode-private-key` does, refuses
    a key readable by group/others, and checks that the public key (if given) matches."""
    path = Path(private_key).expanduser()
    if not path.is_file():
        raise SecurityError(
            f"Node private key {path} does not exist.",
            "Create it with `medfed pki node --site NAME --out DIR` on this machine, and set "
            "[identity] private-key in site.toml.",
        )
    if path.stat().st_mode & 0o077:
        raise SecurityError(
            f"Node private key {path} is readable by other users (mode "
            f"{path.stat().st_mode & 0o777:o}).",
            f"Run `chmod 600 {path}` (owner: the user that runs medfed).",
        )
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise SecurityError(
            f"{path} is not an unencrypted OpenSSH private key: {err}.",
            "Create node keys with `medfed pki node`.",
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecurityError(
            f"{path} is not an ECDSA key; Flower's SuperNode auth needs one.",
            "Create node keys with `medfed pki node`.",
        )
    fp = fingerprint(key.public_key())
    if public_key is not None and fingerprint(load_node_public_key(public_key)) != fp:
        raise SecurityError(
            f"{public_key} is not the public half of {path}.",
            "Use the .pub file written next to the key, or regenerate both with --force.",
        )
    return fp
