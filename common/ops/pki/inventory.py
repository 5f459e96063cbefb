"""What `medfed pki list` shows about a certificate: subject, expiry, fingerprint, SANs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from common.ops.pki.files import read_pem
from common.ops.pki.server_cert import san_text


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
    cert = x509.load_pem_x509_certificate(read_pem(path, "certificate"))
    try:
        san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(san_text(n) for n in san_ext)
    except x509.ExtensionNotFound:
        sans = ()
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        sans=sans,
    )
