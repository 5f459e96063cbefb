"""The consortium CA: created once on the operator's machine, trusted by the server and every site."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.errors import ConfigError, SecurityError
from common.ops.pki.files import CLOCK_SKEW, CURVE, ensure_dir, exists_error, now, private_pem, write_file

CA_KEY = "ca.key"
CA_CERT = "ca.pem"


@dataclass(frozen=True)
class CaPaths:
    key: Path
    cert: Path


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
    directory = ensure_dir(Path(dir))
    paths = CaPaths(key=directory / CA_KEY, cert=directory / CA_CERT)
    if paths.key.exists() and not force:
        raise exists_error(paths.key)

    key = ec.generate_private_key(CURVE())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medfed consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    start = now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    write_file(paths.key, private_pem(key), mode=0o600, force=force)
    write_file(paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    return paths


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """The CA only signs certificates; the server signs and agrees keys in TLS handshakes."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA's key and certificate, checked to be a matching pair (needed to sign anything)."""
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
