"""`site.toml`: one hospital's settings for `medfed client start|status`, validated up front.

The hospital decides its own privacy policy here ([privacy], plus [site] require-secagg):
`SiteConfig.policy()` is a `client.privacy.policy.SitePolicy`, and the daemon hands it to every
ClientApp through the SuperNode's node config, where it overrides whatever a run asks. Missing or loose key material is a `SecurityError` (exit 7) before anything
connects; a typo in a key name is a `ConfigError` (exit 2) listing every problem at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from client.privacy.policy import DEFAULT_MIN_COHORT, SitePolicy
from common.ops import pki
from common.ops.deploy_toml import TomlFile, split_host_port
from common.device import DEVICE_CHOICES
from common.errors import SecurityError
from common.node_config import AUDIT_LOG_FILE, PRIVACY_LEDGER_FILE, NodeKey
from common.privacy.sample_dp import SAMPLE_DP

EXAMPLE = "deploy/examples/site.toml"
TABLES = {"site", "data", "privacy", "tls", "identity"}
SITE_KEYS = {"name", "server", "state-dir", "device", "insecure", "require-secagg", "runtime-port", "max-wait-time"}
DATA_KEYS = {"dataset", "site", "path", "format", "label-column", "text-column"}
PRIVACY_KEYS = {"mode", "allow-modes", "epsilon", "total-epsilon", "delta", "max-grad-norm", "accountant",
                "min-cohort", "release-evaluation", "allow-synthesis", "allow-class-balance"}
TABLE_FORMATS = ("table", "text-table")  # the formats whose columns [data] label-column / text-column name
TLS_KEYS = {"ca-cert"}
IDENTITY_KEYS = {"private-key", "public-key"}
SITE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # as `medfed pki node --site`
DEFAULT_MAX_WAIT_S = 60.0

INSECURE_WARNINGS = (
    "this hospital connects WITHOUT TLS (insecure): model updates travel in clear text and the "
    "site cannot tell the real server from an impostor. Throw-away trials only, never patient data.",
    "node authentication is OFF in insecure mode: the site's key is not used and the server cannot "
    "verify who this site is.",
)


@dataclass(frozen=True)
class SiteConfig:
    config_path: Path
    name: str
    server: str
    state_dir: Path
    device: str
    insecure: bool
    require_secagg: bool
    runtime_port: int  # 0 = a free port picked at each start
    max_wait_time: float
    dataset: str
    dataset_site: str
    data_path: Path | None
    data_format: str
    label_column: str  # the hospital's own table: how it is read is the site's decision, not a run's
    text_column: str
    epsilon: float
    delta: float
    max_grad_norm: float | None
    mode: str
    allow_modes: tuple[str, ...]
    total_epsilon: float | None  # None: fail-closed default (= epsilon), see SitePolicy
    accountant: str
    min_cohort: int
    release_evaluation: bool
    allow_synthesis: bool
    allow_class_balance: bool
    ca_cert: Path | None
    private_key: Path | None
    public_key: Path | None
    warnings: tuple[str, ...] = ()

    @property
    def flwr_home(self) -> Path:
        return self.state_dir / "flwr-home"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "client.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "medfed-client.pid"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / PRIVACY_LEDGER_FILE  # where client/flower_client.py keeps it

    def policy(self) -> SitePolicy:
        """The site's privacy policy (validated when the file was loaded)."""
        return SitePolicy(
            epsilon=self.epsilon, delta=self.delta, total_epsilon=self.total_epsilon, mode=self.mode,
            allowed_modes=self.allow_modes, max_grad_norm=self.max_grad_norm, accountant=self.accountant,
            min_cohort=self.min_cohort, require_secagg=self.require_secagg, release_evaluation=self.release_evaluation,
            allow_synthesis=self.allow_synthesis, allow_class_balance=self.allow_class_balance,
        )

    @property
    def audit_log_path(self) -> Path:
        return self.state_dir / AUDIT_LOG_FILE  # client/privacy/audit.py; its head file sits next to it

    def node_config(self) -> dict[str, Any]:
        """What the ClientApp reads from `context.node_config` (client/site.py, client/mods.py):
        the site's facts plus its whole privacy policy (`SitePolicy.to_node_config`)."""
        out: dict[str, Any] = {
            NodeKey.SITE: self.name,
            NodeKey.STATE_DIR: str(self.state_dir.resolve()),
            NodeKey.DEVICE: self.device,
            **self.policy().to_node_config(),
        }
        if self.data_path is not None:
            out[NodeKey.DATA_PATH] = str(self.data_path.resolve())
            out[NodeKey.DATA_FORMAT] = self.data_format
            out[NodeKey.LABEL_COLUMN] = self.label_column
            out[NodeKey.TEXT_COLUMN] = self.text_column
        else:
            out[NodeKey.DATASET] = self.dataset
            out[NodeKey.DATASET_SITE] = self.dataset_site
        return out


def load_site_config(path: Path | str, *, insecure: bool = False, check_files: bool = True) -> SiteConfig:
    """Read and validate `site.toml`. `insecure` is the command line's `--insecure`."""
    toml = TomlFile(path, example=EXAMPLE)
    toml.check_tables(TABLES, required={"site", "data", "privacy"})
    for table, keys in (("site", SITE_KEYS), ("data", DATA_KEYS), ("privacy", PRIVACY_KEYS),
                        ("tls", TLS_KEYS), ("identity", IDENTITY_KEYS)):
        toml.check_keys(table, keys)

    name = toml.get("site", "name", str)
    if name is not None and not SITE_NAME_RE.match(name):
        toml.problems.append(f"[site] name = {name!r} must be lowercase letters, digits, '-' or '_' "
                             "(as given to `medfed pki node --site`).")
    server = toml.get("site", "server", str)
    if server is not None and split_host_port(server) is None:
        toml.problems.append(f"[site] server = {server!r} must be host:port, e.g. \"fl.example.org:9092\" (no scheme).")
    state_dir = toml.get_path("site", "state-dir")
    device = toml.get("site", "device", str, "auto")
    if device is not None and device not in DEVICE_CHOICES and not re.match(r"^cuda:\d+$", device):
        toml.problems.append(f"[site] device = {device!r} must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
    insecure = bool(toml.get("site", "insecure", bool, False)) or insecure
    require_secagg = bool(toml.get("site", "require-secagg", bool, True))
    runtime_port = toml.get("site", "runtime-port", int, 0) or 0
    if not (runtime_port == 0 or 1024 <= runtime_port < 65536):
        toml.problems.append(f"[site] runtime-port = {runtime_port} must be 0 (pick a free port) or 1024..65535.")
    max_wait = toml.get("site", "max-wait-time", float, DEFAULT_MAX_WAIT_S) or DEFAULT_MAX_WAIT_S
    if max_wait <= 0:
        toml.problems.append(f"[site] max-wait-time = {max_wait} must be a positive number of seconds.")

    data = toml.table("data")
    dataset, dataset_site, data_path, data_format = "", "", None, ""
    label_column = toml.get("data", "label-column", str, "label") or ""
    text_column = toml.get("data", "text-column", str, "text") or ""
    if ("dataset" in data) == ("path" in data):
        toml.problems.append("[data] needs exactly one of: path (+ format) for this hospital's own files, "
                             "or dataset (+ site) for a built-in dataset.")
    elif "dataset" in data:
        dataset = toml.get("data", "dataset", str) or ""
        dataset_site = toml.get("data", "site", str, name or "") or ""
        for key in ("format", "label-column", "text-column"):
            if key in data:
                toml.problems.append(f"[data] {key} only applies to path; remove it (or use path instead of dataset).")
    else:
        data_path = toml.get_path("data", "path")
        data_format = toml.get("data", "format", str, "") or ""
        if "site" in data:
            toml.problems.append("[data] site only applies to a built-in dataset; remove it.")
        for key in ("label-column", "text-column"):  # a typo'd column would otherwise be ignored silently
            applies = TABLE_FORMATS if key == "label-column" else ("text-table",)
            if key in data and data_format and data_format not in applies:
                toml.problems.append(f"[data] {key} only applies to format {' or '.join(applies)}; remove it "
                                     f"(format is {data_format!r}).")
        if not label_column.strip() or not text_column.strip():
            toml.problems.append("[data] label-column and text-column must name a column (defaults: label, text).")
        elif label_column == text_column:
            toml.problems.append(f"[data] label-column and text-column are both {label_column!r}; name two columns.")

    epsilon = toml.get("privacy", "epsilon", float)
    delta = toml.get("privacy", "delta", float)
    max_grad_norm = toml.get("privacy", "max-grad-norm", float, None)
    mode = toml.get("privacy", "mode", str, SAMPLE_DP.name) or SAMPLE_DP.name
    allow_modes = _modes(toml, mode)
    total_epsilon = toml.get("privacy", "total-epsilon", float, None)
    accountant = toml.get("privacy", "accountant", str, "rdp") or "rdp"
    min_cohort = toml.get("privacy", "min-cohort", int, DEFAULT_MIN_COHORT)
    min_cohort = DEFAULT_MIN_COHORT if min_cohort is None else min_cohort
    release_evaluation = bool(toml.get("privacy", "release-evaluation", bool, True))
    allow_synthesis = bool(toml.get("privacy", "allow-synthesis", bool, True))
    allow_class_balance = bool(toml.get("privacy", "allow-class-balance", bool, False))
    if epsilon is not None and delta is not None:
        rules = SitePolicy(epsilon=epsilon, delta=delta, total_epsilon=total_epsilon, mode=mode,
                           allowed_modes=allow_modes, max_grad_norm=max_grad_norm, accountant=accountant,
                           min_cohort=min_cohort)
        toml.problems += [f"[privacy] {p}" for p in rules.problems()]

    ca_cert = private_key = public_key = None
    warnings: list[str] = []
    if insecure:
        warnings.extend(INSECURE_WARNINGS)
    else:
        if "tls" not in toml.doc:
            toml.problems.append("the [tls] table is missing (ca-cert = the consortium's ca.pem); TLS is required "
                                 "unless you pass --insecure for a throw-away trial.")
        else:
            ca_cert = toml.get_path("tls", "ca-cert")
        if "identity" not in toml.doc:
            toml.problems.append("the [identity] table is missing (private-key = this site's key from `medfed pki node`).")
        else:
            private_key = toml.get_path("identity", "private-key")
            public_key = toml.get_path("identity", "public-key", None)
    toml.raise_if_problems()
    assert name is not None and server is not None and state_dir is not None
    assert epsilon is not None and delta is not None

    config = SiteConfig(
        config_path=toml.path, name=name, server=server, state_dir=state_dir, device=str(device),
        insecure=insecure, require_secagg=require_secagg, runtime_port=int(runtime_port), max_wait_time=float(max_wait),
        dataset=dataset, dataset_site=dataset_site, data_path=data_path, data_format=data_format,
        label_column=label_column, text_column=text_column,
        epsilon=epsilon, delta=delta, max_grad_norm=max_grad_norm, mode=mode, allow_modes=allow_modes,
        total_epsilon=total_epsilon, accountant=accountant, min_cohort=min_cohort,
        release_evaluation=release_evaluation, allow_synthesis=allow_synthesis,
        allow_class_balance=allow_class_balance, ca_cert=ca_cert, private_key=private_key, public_key=public_key, warnings=tuple(warnings),
    )  # fmt: skip
    if check_files and not insecure:
        check_security_files(config)
    return config


def _modes(toml: TomlFile, mode: str) -> tuple[str, ...]:
    """[privacy] allow-modes: a list of mode names; absent, just `mode`."""
    raw = toml.table("privacy").get("allow-modes", [mode])
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        toml.problems.append(f'[privacy] allow-modes = {raw!r} must be a list of mode names, e.g. ["sample-dp"].')
        return (mode,)
    return tuple(raw)


def check_security_files(config: SiteConfig) -> None:
    """The CA certificate parses; the node key is private, ECDSA, and matches its .pub."""
    assert config.ca_cert is not None and config.private_key is not None
    try:
        x509.load_pem_x509_certificate(config.ca_cert.read_bytes())
    except OSError as err:
        raise SecurityError(
            f"[tls] ca-cert {config.ca_cert} cannot be read ({err.strerror}).",
            f"copy the consortium's ca.pem (from the operator, `medfed pki init`) to {config.ca_cert}, "
            f"or fix the path in {config.config_path}.",
        ) from None
    except ValueError as err:
        raise SecurityError(
            f"[tls] ca-cert {config.ca_cert} is not a PEM certificate: {err}.",
            "ask the operator for the consortium's ca.pem (written by `medfed pki init`).",
        ) from None
    try:
        pki.check_node_identity(config.private_key, config.public_key)
    except SecurityError as err:
        raise SecurityError(f"[identity] in {config.config_path}: {err.problem}", err.fix) from None
