"""Exit codes and the one table that turns errors into a message and a code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer

from regtool.errors import NoMatchError, OperationalError, RegtoolError, UsageError
from regtool.storage.driver import StorageError


class ExitCode(IntEnum):
    OK = 0
    PROBLEMS = 1  # the command ran and found problems, or refused to act for safety
    USAGE = 2  # the arguments do not make sense
    OPERATIONAL = 3  # root missing or unrecognised, unreadable files, lock held


# (exception type, exit code), first match wins
ERRORS: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (UsageError, ExitCode.USAGE),
    (NoMatchError, ExitCode.PROBLEMS),
    (OperationalError, ExitCode.OPERATIONAL),
    (RegtoolError, ExitCode.OPERATIONAL),
    (StorageError, ExitCode.OPERATIONAL),
    (OSError, ExitCode.OPERATIONAL),
)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(exc: BaseException) -> ExitCode | None:
    for kind, code in ERRORS:
        if isinstance(exc, kind):
            return code
    return None


def describe(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, RegtoolError):
        return exc.message, exc.hint
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}", None
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__, None


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Known errors become `Error: ...` (+ `Hint: ...`) on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except (RegtoolError, StorageError, OSError) as exc:
            if os.environ.get("REGTOOL_DEBUG"):
                raise
            code = exit_code_for(exc) or ExitCode.OPERATIONAL
            message, hint = describe(exc)
            sys.stderr.write(f"Error: {message}\n")
            if hint:
                sys.stderr.write(f"Hint: {hint}\n")
            raise typer.Exit(int(code)) from None

    return wrapper
