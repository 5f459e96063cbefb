"""`medfed pki ...`: create the consortium CA, the server certificate and hospital node keys.

Every command says where each file went and which machine it must be copied to, because the
most common PKI mistake is a private key travelling where it should not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.ops import pki
from simulations.cli.support import user_errors, warn
from common.errors import SecurityError

pki_app = typer.Typer(
    help="Consortium PKI: CA, server TLS certificate and one identity key per hospital.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path,
    typer.Option(
        "--dir",
        help="PKI folder on the operator's machine (holds ca.key: keep it private and backed up).",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Replace existing keys/certificates (rotation). Never implicit."),
]


def _say(line: str = "") -> None:
    typer.echo(line)


@pki_app.command("init")
@user_errors
def init_cmd(
    dir: DirOpt,  # noqa: A002
    common_name: Annotated[
        str, typer.Option("--common-name", help="Subject common name of the CA.")
    ] = "medfed consortium CA",
    days: Annotated[int, typer.Option("--days", help="CA validity in days.")] = 3650,
    force: ForceOpt = False,
) -> None:
    """Create the consortium certificate authority (ca.key + ca.pem)."""
    if force and (dir / pki.CA_KEY).exists():
        warn(
            "replacing the CA: every server certificate issued by the old CA stops being "
            "trusted; reissue it with `medfed pki server --force` and send the new ca.pem to "
            "every site."
        )
    paths = pki.init_ca(dir, common_name=common_name, days=days, force=force)
    info = pki.describe_cert(paths.cert)
    _say(f"CA private key:  {paths.key}  (mode 0600)")
    _say("  -> stays on this machine. Never copy it to the server or a hospital; back it up offline.")
    _say(f"CA certificate:  {paths.cert}")
    _say("  -> copy to the server AND to every hospital: /etc/medfed/pki/ca.pem")
    _say("     (server.toml [tls] ca-cert, site.toml [tls] ca-cert).")
    _say(f"  SHA-256 {info.sha256}")
    _say("  Sites can compare this fingerprint (`medfed pki list`) to check they got the right CA.")
    _say(f"Next: medfed pki server --dir {dir} --host <server name or IP>")


@pki_app.command("server")
@user_errors
def server_cmd(
    dir: DirOpt,  # noqa: A002
    host: Annotated[
        list[str],
        typer.Option(
            "--host",
            help="DNS name or IP address the hospitals use to reach the server (repeatable). "
            "127.0.0.1, ::1 and localhost are always added.",
        ),
    ],
    days: Annotated[int, typer.Option("--days", help="Certificate validity in days.")] = 825,
    force: ForceOpt = False,
) -> None:
    """Issue the server's TLS certificate (server.key + server.pem), signed by the CA."""
    paths = pki.issue_server_cert(dir, hosts=host, days=days, force=force)
    _say(f"Server private key:  {paths.key}  (mode 0600)")
    _say("  -> copy to the server ONLY: /etc/medfed/pki/server.key, owner medfed, mode 0600")
    _say("     (server.toml [tls] server-key); then delete the copy here.")
    _say(f"Server certificate:  {paths.cert}")
    _say("  -> copy to the server: /etc/medfed/pki/server.pem (server.toml [tls] server-cert).")
    _say(f"  Valid for: {', '.join(paths.hosts)}")
    _say(f"Next, one identity per hospital: medfed pki node --dir {dir} --site <name>")


@pki_app.command("node")
@user_errors
def node_cmd(
    dir: DirOpt,  # noqa: A002
    site: Annotated[str, typer.Option("--site", help="Hospital name, e.g. cleveland.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write <site>.key/<site>.pub (default: --dir). Best run on the "
            "hospital's own machine so the private key never travels.",
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="Record an existing <site>.pub created at the hospital instead of creating a "
            "new key pair here.",
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Create a hospital's SuperNode identity key and add it to authorized_nodes.json."""
    registry = dir / pki.AUTHORIZED_NODES
    if public_key is not None:
        if out is not None:
            warn("--out is ignored with --public-key (no key pair is created).")
        entry = pki.register_node_public_key(dir, site, public_key, force=force)
        _say(f"Recorded {site}'s public key {public_key} in {registry}")
        _say(f"  fingerprint {entry.fingerprint}  (check it with the hospital over the phone)")
    else:
        paths = pki.create_node_identity(dir, site, out=out, force=force)
        _say(f"Node private key:  {paths.private_key}  (mode 0600)")
        _say(f"  -> belongs to {site} ONLY: copy it to that hospital's machine as")
        _say(f"     /etc/medfed/pki/{site}.key (owner medfed, mode 0600; site.toml [identity]")
        _say("     private-key), then delete every other copy. It never goes to the server.")
        _say(f"Node public key:   {paths.public_key}")
        _say(f"  -> copy next to the private key at {site} (site.toml [identity] public-key).")
        _say(f"Recorded in {registry}  fingerprint {paths.fingerprint}")
    _say(f"  -> copy {registry.name} to the server: /etc/medfed/pki/{registry.name}")
    _say("     (server.toml [auth] authorized-nodes); `medfed server start` registers every key in it.")


@pki_app.command("list")
@user_errors
def list_cmd(dir: DirOpt) -> None:  # noqa: A002
    """Show the CA, the server certificate and the registered hospitals in a PKI folder."""
    if not dir.is_dir():
        raise SecurityError(
            f"PKI folder {dir} does not exist.", f"Create it with `medfed pki init --dir {dir}`."
        )
    for label, name in (("CA", pki.CA_CERT), ("Server", pki.SERVER_CERT)):
        path = dir / name
        if not path.is_file():
            _say(f"{label}: none ({path} missing)")
            continue
        info = pki.describe_cert(path)
        _say(f"{label}: {info.subject}  expires {info.not_after:%Y-%m-%d}")
        _say(f"  {path}  SHA-256 {info.sha256}")
        if info.sans:
            _say(f"  valid for: {', '.join(info.sans)}")
            if (dir / pki.CA_CERT).is_file():
                try:
                    pki.verify_server_cert(dir / pki.CA_CERT, path, info.sans[0])
                    _say("  chain: signed by this CA, serverAuth, valid now")
                except SecurityError as err:
                    warn(err.problem)
    nodes = pki.load_authorized_nodes(dir / pki.AUTHORIZED_NODES)
    _say(f"Hospitals ({len(nodes)}) in {dir / pki.AUTHORIZED_NODES}:")
    for node in nodes.values():
        _say(f"  {node.site:<16} {node.fingerprint}  added {node.added[:10]}")
    if not nodes:
        _say(f"  none yet: medfed pki node --dir {dir} --site <name>")
