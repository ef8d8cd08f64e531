"""`regtool import FILE.tar`: write the images of a docker/podman save tarball into storage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt
from regtool.cli.output import Format
from regtool.layout.detect import choose_target
from regtool.ops.tarball import ImportResult, import_tarball


@friendly_errors
def import_(
    file: Annotated[Path, typer.Argument(help="A tarball from docker save or podman save.")],
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", "-t", help="REPO[:TAG] for the image (one image only).", show_default=False
        ),
    ] = None,
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

    Example:

        regtool import app.tar --tag app:1.4 --root /var/lib/registry
    """
    destination, bucket = choose_target(root, config)
    result = import_tarball(file, destination, tag=tag, config=bucket)
    out.emit(result, fmt, lambda: _table(result))


def _table(result: ImportResult) -> str:
    rows = [
        [
            f"{image.repository}:{image.tag}",
            out.short_id(image.manifest),
            image.layers,
            out.human_size(image.size),
            image.status,
        ]
        for image in result.images
    ]
    table = out.grid(rows, ["IMAGE", "MANIFEST", "LAYERS", "SIZE", "STATUS"])
    total = (
        f"{len(result.images)} image(s) from {result.format} tarball: "
        f"{result.blobs_written} blobs written ({out.human_size(result.bytes_written)}) "
        f"in {result.seconds:.1f} s"
    )
    return f"{table}\n{total}"
