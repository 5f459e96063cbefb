"""Shared command-line plumbing: user errors become a message and a documented exit code."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer

from common.errors import MedfedError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Decorate a Typer command so a `MedfedError` prints `error: ...` (no traceback) and exits
    with the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MedfedError as err:
            typer.echo(f"error: {err.message}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)
