"""One registry per extension point (privacy modes, strategies, hospital formats, datasets, models).

Why a class and not a dict per module: every extension point needs the same three things, and
writing them again per point is how they drift apart:
  * registration refuses a name twice (two files claiming "fedavg" is a bug, not an override);
  * a lookup of an unknown name is a `ConfigError` that names the setting, the unknown value
    and every value that would work (Opacus' `create_accountant` does the same);
  * configuration validation reads the registry's own names, so a new entry is valid
    everywhere the moment its one registration line runs.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from common.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, e.g. ``Registry("privacy mode", setting="privacy-mode")``."""

    def __init__(self, kind: str, *, setting: str) -> None:
        self.kind = kind
        self.setting = setting
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; returns it so a module can write ``X = REG.register("x", X())``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; each name must be unique.")
        self._entries[name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def problem(self, name: str) -> str | None:
        """The configuration problem for `name`, or None when it is registered."""
        if name in self._entries:
            return None
        return f"{self.setting}={name!r} is unknown; use one of {', '.join(self._entries)}."

    def get(self, name: str) -> T:
        """The entry for `name`; an unknown name is a ConfigError listing the known ones."""
        problem = self.problem(name)
        if problem is not None:
            raise ConfigError(problem, f"set {self.setting} to one of: {', '.join(self._entries)}.")
        return self._entries[name]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
