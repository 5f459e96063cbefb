"""Reading the operator's `server.toml` and a hospital's `site.toml`.

Both files are hand-edited on machines where a typo must not become a silent default: every
table and key is checked against the documented set (unknown keys are an error, with a
"did you mean" hint), values are type-checked, and *all* problems are reported at once
(Opacus-validator style) in one `ConfigError` naming the file, the table and the key.
Relative paths are resolved against the folder of the TOML file, so a config that sits next
to its certificates works wherever the command is run from.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from pathlib import Path
from typing import Any

from common.errors import ConfigError

_MISSING = object()


class TomlFile:
    """One parsed TOML file plus the problems found while reading it."""

    def __init__(self, path: Path | str, *, example: str) -> None:
        self.path = Path(path).expanduser().absolute()
        self.example = example  # where the documented example lives, for the fix text
        self.problems: list[str] = []
        if not self.path.is_file():
            raise ConfigError(
                f"The configuration file {self.path} does not exist.",
                f"create it from {example} (every key is explained there) and pass its path.",
            )
        try:
            self.doc: dict[str, Any] = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{self.path} cannot be read: {err}.", "check the file's owner and mode.") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(
                f"{self.path} is not valid TOML: {err}.",
                'fix the syntax (strings need quotes: name = "cleveland"); compare with ' + example + ".",
            ) from None

    # ------------------------------------------------------------------ structure

    def check_tables(self, allowed: set[str], required: set[str]) -> None:
        for name in self.doc:
            if name not in allowed:
                self.problems.append(f"[{name}] is not a known table{_hint(name, allowed)}.")
            elif not isinstance(self.doc[name], dict):
                self.problems.append(f"{name} must be a table ([{name}]), not a single value.")
        for name in sorted(required - set(self.doc)):
            self.problems.append(f"the [{name}] table is missing.")

    def table(self, name: str) -> dict[str, Any]:
        value = self.doc.get(name, {})
        return value if isinstance(value, dict) else {}

    def check_keys(self, table: str, allowed: set[str], *, ignored: dict[str, str] | None = None) -> list[str]:
        """Report unknown keys of `[table]`; return the `ignored` (legacy) keys that are present.

        `ignored` maps a legacy key to the reason it is ignored; the caller warns about it."""
        present_legacy = []
        for key in self.table(table):
            if ignored and key in ignored:
                present_legacy.append(key)
            elif key not in allowed:
                self.problems.append(f"[{table}] {key} is not a known key{_hint(key, allowed)}.")
        return present_legacy

    # ------------------------------------------------------------------ values

    def get(self, table: str, key: str, kind: type, default: Any = _MISSING) -> Any:
        """The typed value of `[table] key`; a problem is recorded (and `default` or None
        returned) when it is missing or of the wrong type."""
        raw = self.table(table).get(key, _MISSING)
        if raw is _MISSING:
            if default is _MISSING:
                self.problems.append(f"[{table}] {key} is missing.")
                return None
            return default
        value = _coerce(raw, kind)
        if value is _MISSING:
            self.problems.append(
                f"[{table}] {key} = {raw!r} must be {_KIND_NAMES.get(kind, kind.__name__)}."
            )
            return None if default is _MISSING else default
        return value

    def get_path(self, table: str, key: str, default: Any = _MISSING) -> Path | None:
        """A path value, made absolute relative to the TOML file's folder."""
        text = self.get(table, key, str, default)
        if not text:
            if text == "" and default is _MISSING:
                self.problems.append(f"[{table}] {key} is empty.")
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    def raise_if_problems(self) -> None:
        if self.problems:
            listed = "\n  - ".join(self.problems)
            raise ConfigError(
                f"{self.path} has {len(self.problems)} problem(s):\n  - {listed}",
                f"edit {self.path}; {self.example} shows and explains every key.",
            )


_KIND_NAMES = {str: "a string (in quotes)", bool: "true or false", int: "a whole number", float: "a number"}


def _coerce(raw: Any, kind: type) -> Any:
    if kind is bool:
        return raw if isinstance(raw, bool) else _MISSING
    if kind is int:
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else _MISSING
    if kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
        return _MISSING
    if kind is str:
        return raw if isinstance(raw, str) else _MISSING
    return raw


def _hint(name: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(allowed), n=1)
    known = ", ".join(sorted(allowed))
    return f" (did you mean {close[0]!r}? known: {known})" if close else f" (known: {known})"


def split_host_port(address: str) -> tuple[str, int] | None:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port); None when it is not of that form."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "://" in address:
        return None
    return host.strip("[]"), int(port)
