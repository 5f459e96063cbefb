"""The consortium PKI: one CA, one server certificate, one identity key per hospital.

Why these formats (checked against the installed Flower 1.41 source, see docs/DEPLOY.md):

- TLS. The SuperLink serves its Fleet, Control and Runtime APIs over one HTTPS port and loads
  `--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile` as PEM. Its own SuperExec subprocess connects to
  the Runtime API over loopback (`0.0.0.0` is rewritten to `127.0.0.1`) and checks the certificate
  against the same CA, so the server certificate always carries 127.0.0.1, ::1 and localhost SANs.
  SuperNodes verify the server with `--root-certificates ca.pem`.
- Node identity. `flower-supernode --auth-supernode-private-key` reads the key with
  `cryptography.hazmat.primitives.serialization.load_ssh_private_key` and requires an EC key;
  `flwr supernode register <pubkey>` reads the public key with `load_ssh_public_key` and requires a
  NIST curve. So a node key is ECDSA P-384 in OpenSSH format (`site.key`, `site.pub`). There is no
  authorised-keys file any more in Flower 1.41 (`--auth-list-public-keys` is rejected): with
  `--enable-supernode-auth` each public key is registered through the Control API. medfed keeps its
  own `authorized_nodes.json` (site -> public key, fingerprint, path) so the server knows which keys
  to register and the operator knows which key is which hospital.

Every private key is written atomically, with mode 0600 set on the file before any key byte is
written, and is never replaced unless the caller passes `force=True`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from common.errors import ConfigError, SecurityError

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
SERVER_KEY = "server.key"
SERVER_CERT = "server.pem"
AUTHORIZED_NODES = "authorized_nodes.json"

#: Flower's own key generator (flwr.supercore.primitives.asymmetric) uses P-384; so do we.
CURVE = ec.SECP384R1
#: The SuperLink's internal SuperExec reaches the Runtime API over loopback with the same cert.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_SITE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DNS_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CaPaths:
    key: Path
    cert: Path


@dataclass(frozen=True)
class ServerCertPaths:
    key: Path
    cert: Path
    hosts: tuple[str, ...]  # every SAN in the certificate, in order


@dataclass(frozen=True)
class NodeKeyPaths:
    site: str
    private_key: Path | None  # None when only an existing public key was recorded
    public_key: Path
    fingerprint: str
    registry: Path  # the authorized_nodes.json the public key was recorded in


@dataclass(frozen=True)
class AuthorizedNode:
    """One entry of authorized_nodes.json."""

    site: str
    public_key: str  # OpenSSH text, e.g. "ecdsa-sha2-nistp384 AAAA... medfed:cleveland"
    fingerprint: str  # "SHA256:..." as `ssh-keygen -lf` prints it
    public_key_path: str
    added: str  # ISO 8601, UTC


# ----------------------------------------------------------------------------- file writing


def _write_atomic(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Write `data` to `path` so that readers never see a partial file.

    The temporary file is created with `mode` (fchmod'ed, so the umask cannot widen or narrow it)
    before the first byte is written. Without `force` the final link is made with `os.link`, which
    fails if the target appeared meanwhile, so a key can never be clobbered by a race either.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise _exists_error(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists_error(path) from None
            tmp.unlink()
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _exists_error(path: Path) -> SecurityError:
    return SecurityError(
        f"{path} already exists; medfed never overwrites a key or certificate silently.",
        "Keep the existing file, or pass --force (force=True) to replace it. Replacing a key "
        "invalidates everything that trusted the old one (see 'Rotating a key' in docs/DEPLOY.md).",
    )


def _ensure_dir(directory: Path) -> Path:
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a directory.", "Pass a directory to --dir.")
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    return directory


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ----------------------------------------------------------------------------- CA


def init_ca(
    dir: Path | str,  # noqa: A002 - mirrors the `--dir` option
    *,
    common_name: str = "medfed consortium CA",
    days: int = 3650,
    force: bool = False,
) -> CaPaths:
    """Create the consortium CA: `ca.key` (0600, stays on the operator's machine) and `ca.pem`
    (public; every site and the server trust it)."""
    if days < 1:
        raise ConfigError(f"CA validity days={days} must be at least 1.", "Pass --days 3650.")
    directory = _ensure_dir(Path(dir))
    paths = CaPaths(key=directory / CA_KEY, cert=directory / CA_CERT)
    if paths.key.exists() and not force:
        raise _exists_error(paths.key)

    key = ec.generate_private_key(CURVE())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medfed consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    _write_atomic(paths.key, _private_pem(key), mode=0o600, force=force)
    _write_atomic(
        paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True
    )
    return paths


def _load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if not key_path.is_file() or not cert_path.is_file():
        raise SecurityError(
            f"No CA found in {directory} (need {CA_KEY} and {CA_CERT}).",
            f"Create it first with `medfed pki init --dir {directory}`, or point --dir at the "
            "folder that holds the CA.",
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise SecurityError(
            f"The CA in {directory} cannot be read: {err}.",
            "Restore ca.key/ca.pem from your backup, or recreate the CA with "
            "`medfed pki init --force` (then reissue every certificate).",
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise SecurityError(
            f"{key_path} does not belong to {cert_path}.",
            "Restore the matching pair from your backup, or recreate the CA with --force.",
        )
    return key, cert


# ----------------------------------------------------------------------------- server certificate


def _parse_host(host: str) -> x509.GeneralName:
    """Turn a host into the right SAN: IP literals become IPAddress, names DNSName."""
    text = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if not text or "://" in text or not all(_DNS_LABEL_RE.match(label) for label in labels):
        raise ConfigError(
            f"--host {host!r} is neither an IP address nor a DNS name.",
            "Pass the bare name or address the hospitals connect to, without scheme or port, "
            "e.g. --host server.example.org --host 10.0.0.5.",
        )
    return x509.DNSName(text.rstrip(".").lower())


def _san_text(name: x509.GeneralName) -> str:
    return str(name.value)


def issue_server_cert(
    dir: Path | str,  # noqa: A002
    *,
    hosts: list[str],
    days: int = 825,
    include_loopback: bool = True,
    force: bool = False,
) -> ServerCertPaths:
    """Issue `server.key` (0600) and `server.pem`, signed by the CA in `dir`, valid for `hosts`.

    Loopback SANs are added unless `include_loopback=False`: the SuperLink's own SuperExec
    connects to it over 127.0.0.1 and verifies this very certificate.
    """
    if not hosts:
        raise ConfigError(
            "No --host given for the server certificate.",
            "Pass every name/IP the hospitals use to reach the server, e.g. --host server.example.org.",
        )
    if days < 1:
        raise ConfigError(f"Server certificate days={days} must be at least 1.", "Pass --days 825.")
    directory = _ensure_dir(Path(dir))
    ca_key, ca_cert = _load_ca(directory)
    paths_key, paths_cert = directory / SERVER_KEY, directory / SERVER_CERT
    if paths_key.exists() and not force:
        raise _exists_error(paths_key)

    sans: list[x509.GeneralName] = []
    for host in [*hosts, *(LOOPBACK_HOSTS if include_loopback else ())]:
        san = _parse_host(host)
        if san not in sans:
            sans.append(san)

    key = ec.generate_private_key(CURVE())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _san_text(sans[0]))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    _write_atomic(paths_key, _private_pem(key), mode=0o600, force=force)
    _write_atomic(paths_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    return ServerCertPaths(key=paths_key, cert=paths_cert, hosts=tuple(_san_text(s) for s in sans))


def _read_pem(source: bytes | str | Path, what: str) -> bytes:
    """Accept PEM bytes/text or a path to a PEM file."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    path = Path(source).expanduser()
    if not path.is_file():
        raise SecurityError(f"The {what} {path} does not exist.", f"Check the {what} path.")
    return path.read_bytes()


def verify_server_cert(ca_pem: bytes | str | Path, cert_pem: bytes | str | Path, host: str) -> None:
    """Check that `cert_pem` chains to `ca_pem`, is valid now, names `host` in its SANs and is
    meant for TLS servers (serverAuth EKU). Raises SecurityError saying what is wrong."""
    try:
        ca = x509.load_pem_x509_certificate(_read_pem(ca_pem, "CA certificate"))
        leaf = x509.load_pem_x509_certificate(_read_pem(cert_pem, "server certificate"))
    except ValueError as err:
        raise SecurityError(
            f"A certificate is not valid PEM: {err}.", "Pass the ca.pem and server.pem written by "
            "`medfed pki`."
        ) from err
    san = _parse_host(host)
    builder = PolicyBuilder().store(Store([ca])).time(_now())
    verifier = builder.build_server_verifier(san)  # type: ignore[arg-type]
    try:
        verifier.verify(leaf, [])
    except VerificationError as err:
        raise SecurityError(
            f"The server certificate does not verify for host {host!r} against this CA: {err}.",
            "Reissue it with `medfed pki server --dir DIR --host <this host> --force` from the "
            "same CA, and make sure every site has that CA's ca.pem.",
        ) from err


# ----------------------------------------------------------------------------- node identities


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


def _check_site(site: str) -> str:
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
    data = (json.dumps(raw, indent=2) + "\n").encode()
    _write_atomic(path, data, mode=0o644, force=True)


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
    _check_site(site)
    directory = _ensure_dir(Path(dir))
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
        added=old.added if old is not None and old.fingerprint == fp else _now().isoformat(),
    )
    nodes[site] = entry
    _save_authorized_nodes(registry, nodes)
    return entry


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
    _check_site(site)
    directory = _ensure_dir(Path(dir))
    out_dir = _ensure_dir(Path(out)) if out is not None else directory
    priv_path, pub_path = out_dir / f"{site}.key", out_dir / f"{site}.pub"
    if priv_path.exists() and not force:
        raise _exists_error(priv_path)
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
    _write_atomic(priv_path, private_bytes, mode=0o600, force=force)
    _write_atomic(pub_path, public_bytes + f" medfed:{site}\n".encode(), mode=0o644, force=True)
    entry = register_node_public_key(directory, site, pub_path, force=True)
    return NodeKeyPaths(
        site=site,
        private_key=priv_path,
        public_key=pub_path,
        fingerprint=entry.fingerprint,
        registry=registry,
    )


# ----------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class CertInfo:
    path: Path
    subject: str
    not_after: dt.datetime
    sha256: str  # certificate fingerprint, colon-separated hex
    sans: tuple[str, ...]


def describe_cert(path: Path | str) -> CertInfo:
    """Summarise a PEM certificate for `medfed pki list`."""
    path = Path(path)
    cert = x509.load_pem_x509_certificate(_read_pem(path, "certificate"))
    try:
        san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(_san_text(n) for n in san_ext)
    except x509.ExtensionNotFound:
        sans = ()
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        sans=sans,
    )
