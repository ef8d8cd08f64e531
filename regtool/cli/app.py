"""The regtool command. Commands are registered explicitly from one table.

`main()` imports only the module of the command being run (plus all of them for the
top-level help), so `regtool ls` does not pay for the server, TLS or tarball code.
`app` (used by tests and docs) has every command.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from regtool import __version__

# command name -> (module under regtool.cli.commands, function name)
COMMANDS: dict[str, tuple[str, str]] = {
    "ls": ("ls", "ls"),
    "layers": ("layers", "layers"),
    "verify": ("verify", "verify_command"),
    "rm": ("rm", "rm"),
    "gc": ("gc", "gc"),
    "prune": ("prune", "prune"),
    "restore": ("restore", "restore_command"),
    "why": ("why", "why"),
    "serve": ("serve", "serve"),
    "htpasswd": ("htpasswd", "htpasswd"),
    "migrate": ("migrate", "migrate"),
    "import": ("import_", "import_"),
    "export": ("export", "export"),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regtool {__version__}")
        raise typer.Exit()


def _root_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Exit codes: 0 ok, 1 problems found or refused for safety, 2 usage, 3 operational."""


def build_app(names: list[str] | None = None) -> typer.Typer:
    """A Typer app with the named commands (all of them by default), in table order."""
    application = typer.Typer(
        name="regtool",
        help="See, verify, clean and serve a private container registry's storage "
        "(distribution v2 and legacy v1 layouts).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",  # paragraphs rewrap to the terminal; indented blocks stay
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(_root_callback)
    for name, (module, function) in COMMANDS.items():
        if names is None or name in names:
            command = getattr(importlib.import_module(f"regtool.cli.commands.{module}"), function)
            application.command(name)(command)
    return application


def _requested(argv: list[str]) -> list[str] | None:
    """The command named on the command line, when it is the first non-option word."""
    for word in argv:
        if not word.startswith("-"):
            return [word] if word in COMMANDS else None
        if word in ("--version", "-V"):
            return []
        if word in ("-h", "--help"):
            return None
    return None


def main() -> None:
    build_app(_requested(sys.argv[1:]))()


def __getattr__(name: str) -> typer.Typer:
    """`regtool.cli.app.app`: the full app, built on first use (tests, docs)."""
    if name == "app":
        globals()["app"] = full = build_app()
        return full
    raise AttributeError(name)
