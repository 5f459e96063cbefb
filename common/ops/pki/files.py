"""How the PKI writes and reads its files; shared by the CA, certificate and key modules.

One place decides the rules every key and certificate follows: written atomically with its mode
set before any byte (common/atomic.py), never replaced without `force`, in a 0700 folder.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.atomic import atomic_write_bytes
from common.errors import ConfigError, SecurityError

#: Flower's own key generator (flwr.supercore.primitives.asymmetric) uses P-384; so do we.
CURVE = ec.SECP384R1
#: Certificates start this much in the past, so a site whose clock is slightly behind accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)


def write_file(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Write a key or certificate atomically with `mode`; without `force` never replace one,
    not even one that appeared during the write."""
    if path.exists() and not force:
        raise exists_error(path)
    try:
        atomic_write_bytes(path, data, mode=mode, overwrite=force)
    except FileExistsError:
        raise exists_error(path) from None


def exists_error(path: Path) -> SecurityError:
    return SecurityError(
        f"{path} already exists; medfed never overwrites a key or certificate silently.",
        "Keep the existing file, or pass --force (force=True) to replace it. Replacing a key "
        "invalidates everything that trusted the old one (see 'Rotating a key' in docs/DEPLOY.md).",
    )


def ensure_dir(directory: Path) -> Path:
    """The PKI folder, created 0700 if missing (it holds private keys)."""
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a directory.", "Pass a directory to --dir.")
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    return directory


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, the format the SuperLink's `--ssl-keyfile` loads."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def read_pem(source: bytes | str | Path, what: str) -> bytes:
    """Accept PEM bytes/text or a path to a PEM file."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    path = Path(source).expanduser()
    if not path.is_file():
        raise SecurityError(f"The {what} {path} does not exist.", f"Check the {what} path.")
    return path.read_bytes()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
