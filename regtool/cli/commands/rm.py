"""`regtool rm REF...`: remove tags (and with --manifest their manifests) so gc frees them."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.commands.gc import short_path
from regtool.cli.confirm import confirm
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt
from regtool.cli.output import Format
from regtool.layout.store import open_storage
from regtool.ops.rm import RmPlan, plan_rm, remove


@friendly_errors
def rm(
    refs: Annotated[
        list[str], typer.Argument(help="REPO[:TAG] (tag: latest), or REPO@DIGEST with --manifest.")
    ],
    manifest: Annotated[
        bool,
        typer.Option(
            "--manifest",
            help="Also drop the manifest when no other tag of the repository needs it.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the plan; remove nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Remove tags from the storage, without a running registry; gc then frees their data.

    Example:

        regtool rm centos:6.7 --manifest --root /var/lib/registry --yes
    """
    store = open_storage(root, config, writable=not dry_run, fsync=False)
    reader = store.reader
    if yes and not dry_run:
        result = remove(store, refs, manifest=manifest)
        _notes(result.plan)
        _finish(result.plan, fmt, result.failed)
        return
    plan = plan_rm(reader, refs, manifest=manifest)
    _notes(plan)
    _emit(plan, fmt, "would remove" if dry_run else "to remove")
    if dry_run or not plan.delete:
        return
    confirm(f"Remove these {len(plan.delete)} entries?", dry_run=dry_run, yes=yes)
    result = remove(store, refs, manifest=manifest, shown=plan)
    for entry in result.skipped:
        out.note(f"left {entry.kind} {entry.id}: it changed before the lock was taken")
    _finish(result.plan, fmt, result.failed)


def _finish(plan: RmPlan, fmt: Format, failed: tuple) -> None:
    _emit(plan, fmt, "removed")
    for entry, reason in failed:
        out.warn(f"could not remove {entry.path}: {reason}")
    if failed:
        raise typer.Exit(int(ExitCode.OPERATIONAL))
    if plan.delete:
        out.note("run regtool gc to free the space these tags held")


def _notes(plan: RmPlan) -> None:
    for line in plan.notes:
        out.note(line)


def _emit(plan: RmPlan, fmt: Format, verb: str) -> None:
    doc = {"delete": out.plain(list(plan.delete)), "bytes": plan.bytes}
    out.emit(doc, fmt, lambda: _table(plan, verb))


def _table(plan: RmPlan, verb: str) -> str:
    if not plan.delete:
        return "nothing to remove"
    rows = [[e.kind, short_path(e.id), short_path(e.path)] for e in plan.delete]
    return out.grid(rows, ["KIND", "ID", "PATH"]) + f"\n{verb} {len(plan.delete)} entries"
