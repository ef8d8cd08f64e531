"""The regtool command: registers each command module explicitly."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool import __version__
from regtool.cli.commands import layers, ls

app = typer.Typer(
    name="regtool",
    help="See, verify, clean and serve a private container registry's storage "
    "(distribution v2 and legacy v1 layouts).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regtool {__version__}")
        raise typer.Exit()


@app.callback()
def root_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Exit codes: 0 ok, 1 problems found or refused for safety, 2 usage, 3 operational."""


app.command("ls")(ls.ls)
app.command("layers")(layers.layers)


def main() -> None:
    app()
