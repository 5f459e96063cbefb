"""The `flwr` command line, as medfed's server commands use it (Flower 1.41).

Why a subprocess and not Flower's Python internals: the CLI is Flower's stable interface.
Its quirks are handled here once: `--format json` exits 0 even on failure (read `success`),
and the connection profile must live in `$FLWR_HOME/config.toml` with an absolute
`root-certificates` path (docs/notes/flower-deployment.md, sections 4-5).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from common.atomic import atomic_write_text
from common.ops.supervise import flower_bin, strip_ansi


class FlwrResult(dict):
    """The parsed JSON of one `flwr ... --format json` call (`success` is always present)."""

    @property
    def ok(self) -> bool:
        return bool(self.get("success"))

    @property
    def error(self) -> str:
        return strip_ansi(str(self.get("error-message", ""))).strip()


def write_connection(
    flwr_home: Path,
    name: str,
    address: str,
    *,
    root_cert: Path | None,
    insecure: bool,
    default: bool = True,
) -> Path:
    """Write/replace `[superlink.<name>]` in $FLWR_HOME/config.toml and, unless
    `default=False`, make it the connection `flwr` uses when none is named."""
    path = Path(flwr_home) / "config.toml"
    config: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    conn: dict[str, Any] = {"address": address}
    if insecure:
        conn["insecure"] = True
    elif root_cert is not None:
        conn["root-certificates"] = str(Path(root_cert).resolve())
    superlink[name] = conn
    if default:
        superlink["default"] = name
    atomic_write_text(path, tomli_w.dumps(config))
    return path


def run_in_own_group(
    argv: Sequence[str], *, env: Mapping[str, str] | None, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command in its own process group and collect its output.

    Overrunning `timeout` kills the whole group (a `flwr` call may leave helpers behind) and
    raises subprocess.TimeoutExpired carrying what it printed so far.
    """
    argv = [str(a) for a in argv]
    with subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=str(cwd) if cwd is not None else None,
        start_new_session=True,
    ) as popen:
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = popen.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err) from None
        return subprocess.CompletedProcess(argv, popen.returncode, out, err)


def run_flwr(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `flwr <args>`; an overrun is exit code 124 with a note on stderr, not an exception."""
    argv = [flower_bin("flwr"), *map(str, args)]
    try:
        return run_in_own_group(argv, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(
            argv, 124, err.output, (err.stderr or "") + f"\ntimed out after {timeout:.0f} s"
        )


def flwr_json(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 120.0) -> FlwrResult:
    """`flwr <args> --format json`; a crash or unparsable output becomes `success: false`."""
    res = run_flwr([*args, "--format", "json"], env=env, timeout=timeout)
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        detail = strip_ansi((res.stderr or "") + (res.stdout or "")).strip()[-2000:]
        return FlwrResult(success=False, **{"error-message": f"exit {res.returncode}: {detail}"})
    return FlwrResult(data)


def flwr_log(run_id: int, connection: str, *, env: Mapping[str, str], lines: int = 40) -> str:
    """The last lines of the ServerApp's output for a run (`flwr log --show`)."""
    res = run_flwr(["log", str(run_id), connection, "--show"], env=env, timeout=60)
    text = strip_ansi(res.stdout or "") + strip_ansi(res.stderr or "")
    return "\n".join(text.strip().splitlines()[-lines:])
