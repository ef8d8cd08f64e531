"""`regtool htpasswd`: add a user to an htpasswd file (bcrypt) or change their password."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.errors import friendly_errors
from regtool.errors import UsageError
from regtool.server.auth import check_user_name, set_password


@friendly_errors
def htpasswd(
    file: Annotated[Path, typer.Argument(help="The htpasswd file; created if missing.")],
    user: Annotated[str, typer.Argument(help="The user to add or update.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Add USER to FILE, or change their password, for `regtool serve --htpasswd FILE`.

    Entries are bcrypt (cost 10), the format distribution's auth.htpasswd reads: the file
    also works for `docker-registry`. Other lines are kept; the file is replaced atomically.
    Without --password-stdin the password is asked twice, hidden.

    Example:

        regtool htpasswd /etc/regtool/htpasswd alice
        regtool htpasswd ./htpasswd ci --password-stdin < ci-password.txt
    """
    check_user_name(user)
    password = _read_stdin() if password_stdin else _prompt(user)
    added = set_password(file, user, password)
    out.note(f"{'added' if added else 'updated'} {user}")


def _read_stdin() -> str:
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise UsageError("no password on stdin", hint="pipe it in: echo PASSWORD | regtool ...")
    return password


def _interactive() -> bool:
    return sys.stdin.isatty()


def _prompt(user: str) -> str:
    if not _interactive():
        raise UsageError(
            "no terminal to ask for the password",
            hint="pass it on stdin with --password-stdin",
        )
    try:
        return typer.prompt(
            f"Password for {user}",
            hide_input=True,
            confirmation_prompt=True,
        )
    except typer.Abort:
        raise UsageError("no password given") from None
