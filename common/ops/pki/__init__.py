"""The consortium PKI: one CA, one server certificate, one identity key per hospital.

Why these formats (checked against the installed Flower 1.41 source, see docs/DEPLOY.md):

- TLS. The SuperLink serves its Fleet, Control and Runtime APIs over one HTTPS port and loads
  `--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile` as PEM; SuperNodes verify the server with
  `--root-certificates ca.pem` (`ca`, `server_cert`).
- Node identity. A node key is ECDSA P-384 in OpenSSH format (`site.key`, `site.pub`), the only
  kind both `flower-supernode --auth-supernode-private-key` and `flwr supernode register` accept
  (`node_identity`); the server's `authorized_nodes.json` says which key is which hospital
  (`authorized_nodes`).

Every private key is written atomically, with mode 0600 set on the file before any key byte is
written, and is never replaced unless the caller passes `force=True` (`files`). `inventory`
summarises certificates for `medfed pki list`. Callers use the names below: `pki.init_ca(...)`.
"""

from common.ops.pki.authorized_nodes import (
    AUTHORIZED_NODES,
    AuthorizedNode,
    fingerprint,
    load_authorized_nodes,
    load_node_public_key,
    register_node_public_key,
)
from common.ops.pki.ca import CA_CERT, CA_KEY, CaPaths, init_ca
from common.ops.pki.inventory import CertInfo, describe_cert
from common.ops.pki.node_identity import NodeKeyPaths, check_node_identity, create_node_identity
from common.ops.pki.server_cert import (
    LOOPBACK_HOSTS,
    SERVER_CERT,
    SERVER_KEY,
    ServerCertPaths,
    issue_server_cert,
    verify_server_cert,
)

__all__ = [
    "AUTHORIZED_NODES",
    "CA_CERT",
    "CA_KEY",
    "LOOPBACK_HOSTS",
    "SERVER_CERT",
    "SERVER_KEY",
    "AuthorizedNode",
    "CaPaths",
    "CertInfo",
    "NodeKeyPaths",
    "ServerCertPaths",
    "check_node_identity",
    "create_node_identity",
    "describe_cert",
    "fingerprint",
    "init_ca",
    "issue_server_cert",
    "load_authorized_nodes",
    "load_node_public_key",
    "register_node_public_key",
    "verify_server_cert",
]
