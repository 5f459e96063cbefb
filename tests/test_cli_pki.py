"""`medfed pki init|server|node|list` (simulations/cli/pki.py): exit codes and what the operator is told."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from common.ops import pki
from simulations.cli.pki import pki_app
from common.errors import ConfigError, SecurityError


@pytest.fixture()
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(pki_app, name="pki")
    return app


def test_cli_init_server_node_list(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "pki")

    r = runner.invoke(cli, ["pki", "init", "--dir", d])
    assert r.exit_code == 0, r.output
    assert "ca.pem" in r.output and "every hospital" in r.output and "Never copy" in r.output

    r = runner.invoke(cli, ["pki", "init", "--dir", d])
    assert r.exit_code == SecurityError.exit_code and "--force" in r.output
    assert "Traceback" not in r.output

    r = runner.invoke(
        cli, ["pki", "server", "--dir", d, "--host", "server.example.org", "--host", "10.0.0.5"]
    )
    assert r.exit_code == 0, r.output
    assert "server.example.org, 10.0.0.5, 127.0.0.1" in r.output

    node_args = ["pki", "node", "--dir", d, "--site", "cleveland", "--out", str(tmp_path / "site")]
    r = runner.invoke(cli, node_args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "site" / "cleveland.key").is_file()
    assert "It never goes to the server" in r.output and "authorized_nodes.json" in r.output

    r = runner.invoke(cli, node_args)
    assert r.exit_code == SecurityError.exit_code
    r = runner.invoke(cli, [*node_args, "--force"])
    assert r.exit_code == 0, r.output

    pki.create_node_identity(tmp_path / "hungary-machine", "hungary")
    pub = str(tmp_path / "hungary-machine" / "hungary.pub")
    r = runner.invoke(cli, ["pki", "node", "--dir", d, "--site", "hungary", "--public-key", pub])
    assert r.exit_code == 0, r.output
    assert "fingerprint SHA256:" in r.output

    r = runner.invoke(cli, ["pki", "node", "--dir", d, "--site", "Bad Name"])
    assert r.exit_code == ConfigError.exit_code

    r = runner.invoke(cli, ["pki", "list", "--dir", d])
    assert r.exit_code == 0, r.output
    assert "Hospitals (2)" in r.output and "cleveland" in r.output and "hungary" in r.output
    assert "chain: signed by this CA" in r.output

    r = runner.invoke(cli, ["pki", "list", "--dir", str(tmp_path / "nowhere")])
    assert r.exit_code == SecurityError.exit_code
