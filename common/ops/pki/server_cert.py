"""The SuperLink's TLS certificate: issued by the consortium CA, verified the way clients do.

The SuperLink serves its Fleet, Control and Runtime APIs over one HTTPS port. Its own SuperExec
subprocess connects to the Runtime API over loopback (`0.0.0.0` is rewritten to `127.0.0.1`) and
checks the certificate against the same CA, so the certificate carries loopback SANs by default.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from common.errors import ConfigError, SecurityError
from common.ops.pki.ca import key_usage, load_ca
from common.ops.pki.files import (
    CLOCK_SKEW,
    CURVE,
    ensure_dir,
    exists_error,
    now,
    private_pem,
    read_pem,
    write_file,
)

SERVER_KEY = "server.key"
SERVER_CERT = "server.pem"
#: The SuperLink's internal SuperExec reaches the Runtime API over loopback with the same cert.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_DNS_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class ServerCertPaths:
    key: Path
    cert: Path
    hosts: tuple[str, ...]  # every SAN in the certificate, in order


def parse_host(host: str) -> x509.GeneralName:
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


def san_text(name: x509.GeneralName) -> str:
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
    directory = ensure_dir(Path(dir))
    ca_key, ca_cert = load_ca(directory)
    paths_key, paths_cert = directory / SERVER_KEY, directory / SERVER_CERT
    if paths_key.exists() and not force:
        raise exists_error(paths_key)

    sans: list[x509.GeneralName] = []
    for host in [*hosts, *(LOOPBACK_HOSTS if include_loopback else ())]:
        san = parse_host(host)
        if san not in sans:
            sans.append(san)

    key = ec.generate_private_key(CURVE())
    start = now()
    not_after = min(start + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, san_text(sans[0]))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    write_file(paths_key, private_pem(key), mode=0o600, force=force)
    write_file(paths_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    return ServerCertPaths(key=paths_key, cert=paths_cert, hosts=tuple(san_text(s) for s in sans))


def verify_server_cert(ca_pem: bytes | str | Path, cert_pem: bytes | str | Path, host: str) -> None:
    """Check that `cert_pem` chains to `ca_pem`, is valid now, names `host` in its SANs and is
    meant for TLS servers (serverAuth EKU). Raises SecurityError saying what is wrong."""
    try:
        ca = x509.load_pem_x509_certificate(read_pem(ca_pem, "CA certificate"))
        leaf = x509.load_pem_x509_certificate(read_pem(cert_pem, "server certificate"))
    except ValueError as err:
        raise SecurityError(
            f"A certificate is not valid PEM: {err}.", "Pass the ca.pem and server.pem written by "
            "`medfed pki`."
        ) from err
    san = parse_host(host)
    builder = PolicyBuilder().store(Store([ca])).time(now())
    verifier = builder.build_server_verifier(san)  # type: ignore[arg-type]
    try:
        verifier.verify(leaf, [])
    except VerificationError as err:
        raise SecurityError(
            f"The server certificate does not verify for host {host!r} against this CA: {err}.",
            "Reissue it with `medfed pki server --dir DIR --host <this host> --force` from the "
            "same CA, and make sure every site has that CA's ca.pem.",
        ) from err
