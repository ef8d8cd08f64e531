"""`regtool export REF... -o FILE.tar`: images out as a tarball docker/podman load accept."""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, reader_for
from regtool.cli.output import Format
from regtool.errors import UsageError
from regtool.ops.tarexport import ExportResult, export_images


@friendly_errors
def export(
    refs: Annotated[list[str], typer.Argument(help="REPO[:TAG] or REPO@DIGEST, one or more.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The tarball to write; - writes to stdout.")
    ],
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="os/arch to take from an index (default linux/amd64)."),
    ] = None,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Write images into one tarball that `docker load` and `podman load` accept.

    The tar is an OCI layout with a docker manifest.json beside it; blobs are copied as
    stored, so digests are kept. `-o -` streams the tarball to stdout (nothing else goes
    there: the summary is written to stderr), for a pipe into `ssh HOST podman load`.

    Example:

        regtool export centos:httpd busybox -o images.tar --root /var/lib/registry
        regtool export centos:httpd -o - | ssh build-host podman load
    """
    to_stdout = str(output) == "-"
    if to_stdout and sys.stdout.isatty():
        raise UsageError(
            "refusing to write a tarball to a terminal", hint="redirect stdout, or -o FILE.tar"
        )
    with progress.shown("export"):
        reader = reader_for(root, config, bulk=False)
        stream = sys.stdout.buffer if to_stdout else None
        result = export_images(reader, refs, output, platform=platform, stream=stream)
    with redirect_stdout(sys.stderr) if to_stdout else nullcontext():
        out.emit(result, fmt, lambda: _table(result))


def _table(result: ExportResult) -> str:
    rows = [
        [
            image.reference,
            out.short_id(image.manifest),
            image.platform or "-",
            image.layers,
            out.human_size(image.size),
        ]
        for image in result.images
    ]
    table = out.grid(rows, ["IMAGE", "MANIFEST", "PLATFORM", "LAYERS", "SIZE"])
    where = "stdout" if result.file == "-" else result.file
    return f"{table}\n{result.blobs} blobs, {out.human_size(result.bytes)} written to {where}"
