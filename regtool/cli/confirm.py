"""The confirmation step every destructive command shares (gc, rm, migrate).

The caller has already shown its plan. Then: `--dry-run` stops there; `--yes` goes on;
on a terminal the user is asked (default no); with no terminal and no `--yes` the command
refuses with exit 2, so a cron job never deletes on a guess.
"""

from __future__ import annotations

import sys

import typer

from regtool.cli.errors import ExitCode
from regtool.cli.output import note
from regtool.errors import UsageError


def _is_terminal() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, *, dry_run: bool, yes: bool) -> bool:
    """True to go on. False for a dry run. Refuses without a terminal; exit 1 on "no"."""
    if dry_run:
        return False
    if yes:
        return True
    if not _is_terminal():
        raise UsageError(
            f"{question.rstrip('?')}: refused, no terminal to confirm on",
            hint="pass --yes to proceed without asking, or --dry-run to only show the plan",
        )
    if typer.confirm(question, default=False, err=True):
        return True
    note("nothing was changed")
    raise typer.Exit(int(ExitCode.PROBLEMS))
