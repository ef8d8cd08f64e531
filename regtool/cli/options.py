"""Options shared by every command, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regtool.cli.output import Format

if TYPE_CHECKING:  # the storage code loads when a command opens storage, not for --help
    from regtool.layout.reader import RegistryReader

RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        envvar="REGTOOL_ROOT",
        help="Storage root: distribution's rootdirectory, its docker/registry/v2 folder, "
        "or a v1 storage_path. Default ./registry.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A distribution config.yml; the storage is its storage.filesystem.rootdirectory "
        "or its storage.s3 bucket (needs regtool[s3]).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option("--format", "-f", help="Output format.", case_sensitive=False),
]

SummaryOpt = Annotated[
    bool,
    typer.Option(
        "--summary",
        "-s",
        help="Table output: one line per repository (entries, size), blobs on a line of "
        "their own, and the total, instead of every entry (json/yaml: unchanged).",
    ),
]


def reader_for(root: Path | None, config: Path | None, *, bulk: bool = True) -> RegistryReader:
    """A read-only reader; `bulk=False` for commands that read a few images, not all."""
    from regtool.layout.store import open_storage

    return open_storage(root, config, bulk=bulk).reader
