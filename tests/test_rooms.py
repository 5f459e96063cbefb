"""The layout's promises, checked on the code itself: who may import whom, what the Flower apps
load at run time, and that the `medfed` command is built from explicit imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPS_PACKAGES = ("common.ops", "client.daemon", "server.deploy")


def _imports(package: str) -> dict[str, set[str]]:
    """Every medfed module imported by each file of `package` (static, lazy imports included)."""
    out: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(REPO))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("common", ("client", "server", "simulations")),
    ("client", ("server", "simulations")),
    ("server", ("client", "simulations")),
])
def test_layering(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = {f: sorted(m for m in mods if m.split(".")[0] in forbidden) for f, mods in _imports(package).items()}
    assert not {f: m for f, m in wrong.items() if m}, f"{package}/ must not import {forbidden}"


def test_the_flower_apps_load_no_operations_code() -> None:
    """ClientApp and ServerApp (and what they run) never import the daemons, deployment or PKI code,
    which pyproject.toml leaves out of the app bundle."""
    probe = (
        "import sys, server.server_app, client.client_app, client.flower_client, client.mods, server.run_setup\n"
        f"print(sorted(m for m in sys.modules if m.startswith({OPS_PACKAGES!r}) or m.startswith('simulations')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    excluded = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["fab-exclude"]
    assert sorted(excluded) == sorted(f"{p.replace('.', '/')}/**" for p in OPS_PACKAGES)


def test_medfed_lists_every_command_group() -> None:
    out = subprocess.run([sys.executable, "-m", "simulations.cli", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("simulate", "synth", "data", "pki", "server", "client"):
        assert f" {command} " in out.stdout, out.stdout


def test_a_sub_command_that_fails_to_import_fails_the_command() -> None:
    """Before, a broken import silently removed `medfed server` from the CLI."""
    probe = "import sys; sys.modules['simulations.cli.server'] = None; import simulations.cli.main"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode != 0 and "simulations.cli.server" in out.stderr.splitlines()[-1]
