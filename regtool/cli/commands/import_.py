"""`regtool import FILE.tar|-`: write the images of a docker/podman save tarball (a file, or
stdin) into storage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt
from regtool.cli.output import Format
from regtool.layout.detect import choose_target
from regtool.ops.tarball import ImportedImage, ImportResult, import_tarball


@friendly_errors
def import_(
    file: Annotated[
        Path, typer.Argument(help="A tarball from docker save or podman save; - reads stdin.")
    ],
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", "-t", help="REPO[:TAG] for the image (one image only).", show_default=False
        ),
    ] = None,
    no_overwrite: Annotated[
        bool,
        typer.Option(
            "--no-overwrite",
            help="Leave a tag that names another image as it is (exit 1, naming it).",
        ),
    ] = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Import images from a tarball straight into the storage, no daemon needed.

    Reads `docker save` output of every generation (legacy repositories + <id>/layer.tar,
    manifest.json, Docker 25+ OCI layout) and `podman save` (docker-archive or
    oci-archive). Raw layers are gzip-compressed; names lose their registry host and
    'library/'. Blobs become visible only once the whole tarball has checked out, so a
    registry serving the same storage never links a blob of a failed import. Exit 3 for
    an unreadable or damaged tarball (truncated, a blob that does not match its digest)
    -- nothing is written then -- and for a full disk (the error says what was left);
    exit 2 for a missing or ambiguous name (use --tag). With --config naming an S3 bucket
    (storage.s3) the images go into that bucket, staged in upload sessions there.

    FILE `-` reads the tarball from stdin in one pass (`podman save IMG | ssh HOST regtool
    import -`); layers are staged as they arrive. A layer the storage already holds under
    another compression (same diff_id) is reused, not stored again. A tag that named
    another image is moved and reported `replaced` with the digest it had; with
    --no-overwrite it is left alone (`kept`), everything else is written, and the run
    exits 1 naming the kept tags.

    Example:

        podman save app:1.4 | ssh host regtool import - --root /var/lib/registry
    """
    with progress.shown("import"):
        destination, bucket = choose_target(root, config)
        stream = sys.stdin.buffer if str(file) == "-" else None
        result = import_tarball(
            file, destination, tag=tag, config=bucket, stream=stream, overwrite=not no_overwrite
        )
    out.emit(result, fmt, lambda: _table(result))
    if result.kept:
        names = ", ".join(f"{image.repository}:{image.tag}" for image in result.kept)
        out.warn(f"--no-overwrite kept {len(result.kept)} tag(s) naming another image: {names}")
        raise typer.Exit(int(ExitCode.PROBLEMS))


def _table(result: ImportResult) -> str:
    rows = [
        [
            f"{image.repository}:{image.tag}",
            out.short_id(image.manifest),
            image.layers,
            out.human_size(image.size),
            _status(image),
        ]
        for image in result.images
    ]
    table = out.grid(rows, ["IMAGE", "MANIFEST", "LAYERS", "SIZE", "STATUS"])
    total = (
        f"{out.count(len(result.images), 'image')} from {result.format} tarball: "
        f"{result.blobs_written} blobs written ({out.human_size(result.bytes_written)}) "
        f"in {result.seconds:.1f} s"
    )
    if result.layers_reused:
        total += f"; {result.layers_reused} layer(s) already stored (same content), reused"
    return f"{table}\n{total}"


def _status(image: ImportedImage) -> str:
    if image.previous is not None:  # replaced or kept: which image the tag named
        return f"{image.status} (was {out.short_id(image.previous)})"
    return image.status
