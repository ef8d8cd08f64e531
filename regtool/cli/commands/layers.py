"""`regtool layers REF`: an image's layers, base first, and who else uses each one."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, reader_for
from regtool.cli.output import Format
from regtool.ops.inventory import short_name
from regtool.ops.layers import LayersReport, image_layers, report_document

SHOWN_SHARERS = 4


@friendly_errors
def layers(
    ref: Annotated[str, typer.Argument(help="REPO[:TAG] or REPO@sha256:DIGEST (tag: latest).")],
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="os/arch of an index to show (default linux/amd64)."),
    ] = None,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show an image's layers, base first, and the other tags that share each layer.

    SHARED WITH names the tags of other images that hold the layer; the image's own tags
    (every tag of its repository naming the same digest) are never listed there, whether
    REF is a tag or a digest: the first line names them instead ("also tagged ...", or
    "tagged ..." / "untagged" for REPO@DIGEST).

    Example:

        regtool layers centos:httpd --root /var/lib/registry
    """
    with progress.shown("layers"):
        report = image_layers(reader_for(root, config), ref, platform)
    for warning in report.warnings:
        out.warn(warning)
    out.emit(report_document(report), fmt, lambda: _table(report))


def _table(report: LayersReport) -> str:
    title = f"{short_name(report.repository)}:{report.tag}" if report.tag else report.reference
    head = title if report.digest in title else f"{title}  {report.digest}"  # digest once
    if report.tag is None:
        head += f"  tagged {', '.join(report.tags)}" if report.tags else "  untagged"
    elif aliases := [tag for tag in report.tags if tag != report.tag]:
        head += f"  also tagged {', '.join(aliases)}"
    if report.platform:
        head += f"  {report.platform} ({report.manifest})"
    body = []
    for number, layer in enumerate(report.layers, 1):
        sharers = sorted(short_name(label) for label in layer.shared_with)
        shown = ", ".join(sharers[:SHOWN_SHARERS])
        if len(sharers) > SHOWN_SHARERS:
            shown += f" +{len(sharers) - SHOWN_SHARERS} more"
        body.append(
            [
                number,
                out.short_id(layer.digest),
                out.human_size(layer.size),
                out.clip(layer.created_by, 48),
                shown or "-",
            ]
        )
    table = out.grid(body, ["#", "LAYER", "SIZE", "CREATED BY", "SHARED WITH"])
    total = f"{out.count(len(report.layers), 'layer')}, {out.human_size(report.size)}"
    return f"{head}\n{table}\n{total}"
