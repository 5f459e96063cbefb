"""`medfed server run`: stage the Flower app, build the run config, submit it, follow it.

Why a staged copy: `flwr run <dir>` walks the whole directory (a repository's `.venv`
included, 5-12 s) before filtering, so the app's packages and `pyproject.toml` are copied
(real files: Flower skips symlinks) into a temporary folder and that is submitted. The FAB's
content, hence its hash, is the same for every run, so SuperNodes install it once.

The run's outputs land in `state-dir/runs/<name>` (`out-dir`), and `run-name = <name>` names
the run's privacy scope at every hospital. A name whose folder holds an interrupted run
resumes it; a name whose folder holds a finished run gets a fresh folder `<name>-2`, ... but
keeps the scope, so the hospitals' ledgers keep counting against the same budget.
"""

from __future__ import annotations

import json

import re
import shutil
import socket
import tempfile
import tomllib
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import tomli_w

import common
from common.config import RunConfig
from common.errors import ConfigError, FederationError
from server.deploy.settings import CONNECTION, MANAGED_RUN_KEYS, ServerSettings
from server.deploy.flwr_cli import flwr_json
from server.strategies import check_strategy

APP_PACKAGES = ("common", "client", "server")
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FINISHED_MARKER = "report.html"


def source_root() -> Path:
    """The folder holding the installed medfed packages (the repository for an editable install)."""
    return Path(common.__file__).resolve().parent.parent


def stage_app(dest: Path) -> Path:
    """Copy the app's packages (*.py only) and its pyproject.toml into `dest`."""
    root = source_root()
    for package in APP_PACKAGES:
        for src in sorted((root / package).rglob("*.py")):
            if "__pycache__" in src.parts:
                continue
            target = dest / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and "flwr" in tomllib.loads(pyproject.read_text()).get("tool", {}):
        shutil.copyfile(pyproject, dest / "pyproject.toml")
    else:  # installed from a wheel: no pyproject.toml next to the packages
        (dest / "pyproject.toml").write_text(tomli_w.dumps(_generated_pyproject()))
    return dest


def _generated_pyproject() -> dict[str, Any]:
    try:
        version = metadata.version("medfed")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return {
        "project": {"name": "medfed", "version": version, "description": "medfed federated app",
                    "license": "Apache-2.0", "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "medfed",
            "components": {"serverapp": "server.server_app:app", "clientapp": "client.client_app:app"},
            "config": RunConfig().to_flower(),
        }}},
    }


def app_defaults(stage: Path) -> dict[str, Any]:
    """`[tool.flwr.app.config]` of the staged app: what Flower merges the overrides into."""
    doc = tomllib.loads((stage / "pyproject.toml").read_text())
    return dict(doc["tool"]["flwr"]["app"].get("config", {}))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--run-config "k=v k2='text'"` (TOML values, as `flwr run` takes them)."""
    if not items:
        return {}
    from flwr.common.config import parse_config_args

    try:
        values = parse_config_args(items)
    except Exception as err:  # noqa: BLE001 - Flower raises plain ValueErrors/TOML errors
        raise ConfigError(
            f"--run-config {' '.join(items)!r} cannot be parsed: {err}.",
            "write key=value pairs separated by spaces, strings in quotes: --run-config \"num-rounds=3 dataset='heart-disease'\".",
        ) from None
    managed = sorted(MANAGED_RUN_KEYS & set(values))
    if managed:
        raise ConfigError(
            f"--run-config sets {', '.join(managed)}, which `medfed server run` manages itself.",
            "name the run with --name; its outputs go to state-dir/runs/<name>.",
        )
    return values


def default_run_name() -> str:
    return datetime.now().strftime("run-%Y%m%d-%H%M%S")


def check_run_name(name: str) -> str:
    if not RUN_NAME_RE.match(name):
        raise ConfigError(
            f"--name {name!r} is not a valid run name (it becomes a folder name and the privacy scope).",
            "use letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. --name heart-2025-06.",
        )
    return name


def choose_out_dir(runs_dir: Path, name: str) -> tuple[Path, str]:
    """`runs/<name>` unless it holds a finished run; then the first free `<name>-N`."""
    out = runs_dir / name
    if not (out / FINISHED_MARKER).exists():
        note = f"resuming the interrupted run in {out}" if (out / "checkpoint.json").exists() else ""
        return out, note
    n = 2
    while (runs_dir / f"{name}-{n}" / FINISHED_MARKER).exists():
        n += 1
    fresh = runs_dir / f"{name}-{n}"
    note = (
        f"{out} already holds a finished run named {name!r}: this run writes to {fresh} but shares "
        f"its privacy scope {name!r}, so each hospital's budget for it keeps counting from what was spent."
    )
    return fresh, note


def build_run_config(
    settings: ServerSettings, *, name: str, out_dir: Path, overrides: dict[str, Any], defaults: dict[str, Any]
) -> tuple[dict[str, Any], RunConfig]:
    """(what is sent as --run-config, the validated configuration the ServerApp will see)."""
    sent = {**settings.run, **overrides, "out-dir": str(out_dir.resolve()), "run-name": name}
    unknown = sorted(k for k in sent if k not in defaults)
    if unknown:
        raise ConfigError(
            f"Unknown run setting(s): {', '.join(unknown)}.",
            f"use only keys of [tool.flwr.app.config]: {', '.join(sorted(defaults))}.",
        )
    if isinstance(schema := sent.get("synth-schema"), str) and schema and not schema.lstrip().startswith("{"):
        sent["synth-schema"] = inline_schema(schema, base=settings.config_path.parent)
    cfg = RunConfig.from_flower({**defaults, **sent})
    check_strategy(cfg.federation.strategy)
    return sent, cfg


def inline_schema(path: str, *, base: Path) -> str:
    """A synthesis run's schema file as the JSON text the run config carries. The sites build the
    same encoder from it, and a path on the server is not on any hospital's disk; the schema is
    public (declared, never fitted), so it may travel with the run. Relative to server.toml."""
    from common.synthesis.schema import TableSchema

    file = Path(path).expanduser()
    file = file if file.is_absolute() else base / file
    TableSchema.from_json(file).validate()  # refused here, with the file named, not at every site
    return json.dumps(json.loads(file.read_text()), separators=(",", ":"))


def check_reachable(settings: ServerSettings) -> None:
    host, _, port = settings.local_address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return
    except OSError as err:
        raise FederationError(
            f"No SuperLink answers on {settings.local_address} ({err}).",
            f"start the server first: `medfed server start --config {settings.config_path}` "
            "(or `systemctl start medfed-server`).",
        ) from None


def submit(stage: Path, run_config: dict[str, Any], env: dict[str, str]) -> int:
    """`flwr run <stage> medfed --run-config <file>`; return the run id."""
    with tempfile.TemporaryDirectory(prefix="medfed-run-config-") as tmp:
        config_file = Path(tmp) / "run-config.toml"  # outside the stage: *.toml would join the FAB
        config_file.write_text(tomli_w.dumps(run_config))
        res = flwr_json(["run", str(stage), CONNECTION, "--run-config", str(config_file)], env=env, timeout=180)
    if not res.ok:
        raise FederationError(
            f"The SuperLink did not accept the run: {res.error}",
            "check that `medfed server start` is running and that [run] holds valid settings.",
        )
    return int(res["run-id"])
