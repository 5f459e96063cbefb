"""`server.toml`: what `medfed server start` and `medfed server run` need, validated up front.

A server that starts with a wrong certificate path would fail minutes later, inside Flower,
with a message about SSL. So every key is checked here and every file is opened and parsed
before any process starts: the certificate chain, that the key belongs to the certificate,
that the key is private, and that the authorised-nodes file is readable. Missing or invalid
security material is a `SecurityError` (exit 7) naming the key, the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from common.ops import pki
from common.config import RunConfig
from common.ops.deploy_toml import TomlFile, split_host_port
from common.errors import SecurityError

EXAMPLE = "deploy/examples/server.toml"
TABLES = {"server", "tls", "auth", "run"}
SERVER_KEYS = {"address", "state-dir", "insecure"}
LEGACY_SERVER_KEYS = {
    "control-address": "Flower 1.41 serves the Control API on the one [server] address port; "
    "control-address is ignored (remove it)."
}
TLS_KEYS = {"ca-cert", "server-cert", "server-key"}
AUTH_KEYS = {"authorized-nodes"}
#: Set by `medfed server run` itself: the run's output folder and its privacy scope.
MANAGED_RUN_KEYS = {"out-dir", "run-name"}
CONNECTION = "medfed"  # the connection name medfed writes into $FLWR_HOME/config.toml

INSECURE_WARNINGS = (
    "the server runs WITHOUT TLS (insecure): model updates travel in clear text and hospitals "
    "cannot tell this server from an impostor. Use only for a throw-away trial, never with patient data.",
    "node authentication is OFF (Flower needs TLS for it): any machine that reaches the port can "
    "join as a hospital; [auth] authorized-nodes is not used.",
)


@dataclass(frozen=True)
class ServerSettings:
    config_path: Path
    host: str
    port: int
    state_dir: Path
    insecure: bool
    ca_cert: Path | None
    server_cert: Path | None
    server_key: Path | None
    authorized_nodes: Path | None
    run: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def local_address(self) -> str:
        """Where commands on the server itself reach the SuperLink (the certificate always
        names the loopback addresses, see common/ops/pki/server_cert.py)."""
        if self.host in ("0.0.0.0", ""):
            return f"127.0.0.1:{self.port}"
        if self.host == "::":
            return f"[::1]:{self.port}"
        return self.address

    @property
    def flwr_home(self) -> Path:
        return self.state_dir / "flwr-home"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def database(self) -> Path:
        return self.state_dir / "superlink.db"

    @property
    def nodes_file(self) -> Path:
        return self.state_dir / "nodes.json"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"


def load_server_settings(path: Path | str, *, insecure: bool = False, check_files: bool = True) -> ServerSettings:
    """Read and validate `server.toml`. `insecure` is the command line's `--insecure`."""
    toml = TomlFile(path, example=EXAMPLE)
    toml.check_tables(TABLES, required={"server"})
    legacy = toml.check_keys("server", SERVER_KEYS, ignored=LEGACY_SERVER_KEYS)
    toml.check_keys("tls", TLS_KEYS)
    toml.check_keys("auth", AUTH_KEYS)
    warnings = [f"[server] {key}: {LEGACY_SERVER_KEYS[key]}" for key in legacy]

    address = toml.get("server", "address", str)
    host, port = "", 0
    if address is not None:
        parsed = split_host_port(address)
        if parsed is None:
            toml.problems.append(
                f"[server] address = {address!r} must be host:port, e.g. \"0.0.0.0:9092\" (no scheme)."
            )
        else:
            host, port = parsed
    state_dir = toml.get_path("server", "state-dir")
    insecure = bool(toml.get("server", "insecure", bool, False)) or insecure

    tls: dict[str, Path | None] = {key: None for key in TLS_KEYS}
    nodes: Path | None = None
    if not insecure:
        if "tls" not in toml.doc:
            toml.problems.append("the [tls] table is missing (ca-cert, server-cert, server-key); TLS is required "
                                 "unless you pass --insecure for a throw-away trial.")
        else:
            tls = {key: toml.get_path("tls", key) for key in sorted(TLS_KEYS)}
        if "auth" not in toml.doc:
            toml.problems.append("the [auth] table is missing (authorized-nodes = the file from `medfed pki node`).")
        else:
            nodes = toml.get_path("auth", "authorized-nodes")
    else:
        warnings.extend(INSECURE_WARNINGS)

    run = dict(toml.table("run"))
    known_run_keys = set(RunConfig().to_flower())
    for key in run:
        if key in MANAGED_RUN_KEYS:
            toml.problems.append(f"[run] {key} is set by `medfed server run` itself (use --name); remove it.")
        elif key not in known_run_keys:
            toml.problems.append(f"[run] {key} is not a run setting{_run_hint(key, known_run_keys)}.")
    toml.raise_if_problems()
    assert state_dir is not None

    settings = ServerSettings(
        config_path=toml.path,
        host=host,
        port=port,
        state_dir=state_dir,
        insecure=insecure,
        ca_cert=tls["ca-cert"],
        server_cert=tls["server-cert"],
        server_key=tls["server-key"],
        authorized_nodes=nodes,
        run=run,
        warnings=tuple(warnings),
    )
    if check_files and not insecure:
        check_security_files(settings)
    return settings


def _run_hint(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (see [tool.flwr.app.config] in pyproject.toml)"


# --------------------------------------------------------------------------- files


def _missing(settings: ServerSettings, key: str, path: Path, what: str, fix: str) -> SecurityError:
    return SecurityError(f"{key} {path} ({what}) does not exist or is not readable.",
                         f"{fix}, or fix the path in {settings.config_path}.")


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False


def check_security_files(settings: ServerSettings) -> None:
    """Open and parse every certificate and key named in [tls] and [auth]."""
    cfg = settings.config_path
    assert settings.ca_cert and settings.server_cert and settings.server_key and settings.authorized_nodes
    files = [
        ("[tls] ca-cert", settings.ca_cert, "the consortium CA certificate",
         "copy ca.pem from the operator's PKI folder (`medfed pki init`)"),
        ("[tls] server-cert", settings.server_cert, "this server's certificate",
         "copy server.pem from the operator's PKI folder (`medfed pki server --host ...`)"),
        ("[tls] server-key", settings.server_key, "this server's private key",
         "copy server.key from the operator's PKI folder (owner medfed, mode 0600)"),
        ("[auth] authorized-nodes", settings.authorized_nodes, "the hospitals' public keys",
         "copy authorized_nodes.json from the operator's PKI folder (`medfed pki node`)"),
    ]
    for key, path, what, fix in files:
        if not _readable(path):
            raise _missing(settings, key, path, what, fix)
    try:
        cert = x509.load_pem_x509_certificate(settings.server_cert.read_bytes())
        x509.load_pem_x509_certificate(settings.ca_cert.read_bytes())
    except ValueError as err:
        raise SecurityError(
            f"[tls] ca-cert/server-cert in {cfg} is not a PEM certificate: {err}.",
            "use the ca.pem and server.pem written by `medfed pki`.",
        ) from None
    if settings.server_key.stat().st_mode & 0o077:
        raise SecurityError(
            f"[tls] server-key {settings.server_key} is readable by other users "
            f"(mode {settings.server_key.stat().st_mode & 0o777:o}).",
            f"run `chmod 600 {settings.server_key}` (owner: the user that runs medfed).",
        )
    try:
        key = serialization.load_pem_private_key(settings.server_key.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise SecurityError(
            f"[tls] server-key {settings.server_key} is not an unencrypted PEM private key: {err}.",
            "use the server.key written by `medfed pki server`.",
        ) from None
    if key.public_key() != cert.public_key():
        raise SecurityError(
            f"[tls] server-key {settings.server_key} does not belong to [tls] server-cert {settings.server_cert}.",
            "copy the matching pair written together by `medfed pki server`.",
        )
    # The SuperLink's own SuperExec connects over loopback and verifies this very certificate.
    pki.verify_server_cert(settings.ca_cert, settings.server_cert, "127.0.0.1")
    pki.load_authorized_nodes(settings.authorized_nodes)  # a corrupt file is a SecurityError
