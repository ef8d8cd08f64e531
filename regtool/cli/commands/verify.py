"""`regtool verify`: re-hash every blob and check links, manifests, tags and leftovers."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, reader_for
from regtool.cli.output import Format
from regtool.layout.v2 import paths as v2paths
from regtool.model.digest import is_digest, is_v1_id, short
from regtool.model.duration import parse_duration
from regtool.ops.verify import VerifyReport, plural, verify


@friendly_errors
def verify_command(
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", help="Blobs hashed in parallel (default: the cores).", min=1),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Check structure only; re-hash nothing.")
    ] = False,
    upload_age: Annotated[
        str,
        typer.Option("--upload-age", help="Report uploads untouched for longer (30m, 24h, 7d)."),
    ] = "24h",
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Re-hash every blob against its digest and check the structure around it.

    Exit status 0 when nothing is wrong or only warnings were found, 1 when any error was.

    Example:

        regtool verify --root /var/lib/registry --jobs 4
    """
    age = parse_duration(upload_age, "--upload-age")
    with progress.shown("verify", "scanning") as live:
        reader = reader_for(root, config)
        report = verify(reader, jobs=jobs or _cores(), quick=quick, upload_age=age, progress=live)
    out.emit(report, fmt, lambda: _table(report))
    if report.errors:
        raise typer.Exit(int(ExitCode.PROBLEMS))


def _table(report: VerifyReport) -> str:
    c = report.checked
    if c.layout == "v1":
        seen = [plural(c.images, "image"), plural(c.tags, "tag"), plural(c.repositories, "repo")]
    else:
        seen = [
            plural(c.blobs, "blob"),
            plural(c.manifests, "manifest"),
            plural(c.links, "link"),
            plural(c.tags, "tag"),
            plural(c.repositories, "repo"),
        ]
    hashed = f"{out.human_size(c.bytes)} re-hashed" if c.bytes else "structure only"
    summary = (
        f"checked {', '.join(seen)} ({hashed}): "
        f"{plural(report.errors, 'error')}, {plural(report.warnings, 'warning')}"
    )
    if not report.problems:
        return summary
    prefix = f"{v2paths.V2}/" if c.layout == "v2" else ""
    rows = [
        [
            p.severity,
            p.kind,
            _object(p.object),
            p.path.removeprefix(prefix),
            out.clip(p.detail, 70),
        ]
        for p in report.problems
    ]
    path_header = f"PATH (below {prefix.rstrip('/')})" if prefix else "PATH"
    table = out.grid(rows, ["SEVERITY", "KIND", "OBJECT", path_header, "DETAIL"])
    hints = dict.fromkeys((p.kind, p.hint) for p in report.problems)
    hint_lines = "\n".join(f"  {kind}: {hint}" for kind, hint in hints)
    return f"{summary}\n{table}\nHints:\n{hint_lines}"


def _object(ident: str) -> str:
    """Digests and v1 ids cut to 12 hex characters; names (repo:tag, uuids) kept."""
    if is_digest(ident) or is_v1_id(ident):
        return short(ident)
    return out.clip(ident, 40)


def _cores() -> int:
    """The cores this process may run on (os.cpu_count ignores CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
