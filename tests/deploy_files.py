"""Shared by the deployment-config tests: a throw-away PKI and server.toml / site.toml writers.

Not a test module: the test files import `pki_dir` (a module-scoped fixture), the TOML writers
and the `medfed server|client` CLI app from here, so each file tests one module with the same
realistic files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from simulations.cli.client import client_cli
from common.ops import pki
from simulations.cli.server import server_cli

REPO = Path(__file__).resolve().parents[1]

app = typer.Typer()
app.add_typer(server_cli, name="server")
app.add_typer(client_cli, name="client")
runner = CliRunner()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server_cert(d, hosts=["fl.example.org"])
    pki.create_node_identity(d, "cleveland")
    return d


def server_toml(tmp_path: Path, pki_dir: Path, *, server: str = "", tls: str | None = None, extra: str = "") -> Path:
    tls = tls if tls is not None else (
        f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\nserver-cert = "{pki_dir / "server.pem"}"\n'
        f'server-key = "{pki_dir / "server.key"}"\n'
        f'[auth]\nauthorized-nodes = "{pki_dir / "authorized_nodes.json"}"\n'
    )
    text = f'[server]\naddress = "0.0.0.0:9092"\nstate-dir = "state"\n{server}\n{tls}\n{extra}'
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def site_toml(tmp_path: Path, pki_dir: Path, *, site: str = "", data: str | None = None,
              privacy: str = "epsilon = 5.0\ndelta = 1e-4\n", security: str | None = None) -> Path:
    data = data if data is not None else 'dataset = "heart-disease"\n'
    security = security if security is not None else (
        f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n'
        f'[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\npublic-key = "{pki_dir / "cleveland.pub"}"\n'
    )
    text = (f'[site]\nname = "cleveland"\nserver = "fl.example.org:9092"\nstate-dir = "state"\n{site}\n'
            f"[data]\n{data}\n[privacy]\n{privacy}\n{security}")
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path
