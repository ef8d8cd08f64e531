"""`regtool rm REF...`: remove tags and the manifests nothing kept needs, so gc frees them."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.commands.gc import short_path
from regtool.cli.confirm import confirm
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt
from regtool.cli.output import Format
from regtool.errors import UsageError
from regtool.layout.store import Store, open_storage
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.rm import RmPlan, RmResult, plan_rm, remove


@friendly_errors
def rm(
    refs: Annotated[
        list[str],
        typer.Argument(
            help="REPO[:TAG] (tag: latest; a glob such as 'app:pr-*' picks tags), or "
            "REPO@DIGEST (the manifest and every tag pointing at it)."
        ),
    ],
    keep_manifest: Annotated[
        bool,
        typer.Option(
            "--keep-manifest",
            help="Remove the tags only; their manifests stay (gc --delete-untagged drops them).",
        ),
    ] = False,
    manifest: Annotated[
        bool,
        typer.Option(
            "--manifest",
            hidden=True,
            help="Drop manifests nothing needs any more: the default.",
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
    """Remove tags from the storage, and the manifests they leave unneeded, so that a plain
    gc frees the EXCLUSIVE bytes `ls` shows for them (and the manifests themselves).

    A manifest goes too (its revision link) when no remaining tag, no kept index (at any
    depth) and no untagged manifest left in place needs it; index children and artifacts
    (signatures, SBOMs) of removed manifests go with them when nothing else needs them.
    --keep-manifest removes tags only. Each real run writes an undo journal first
    (`regtool restore --last` brings it all back until gc sweeps the data).

    Example:

        regtool rm centos:6.7 'app:pr-*' --root /var/lib/registry --yes
    """
    if manifest and keep_manifest:
        raise UsageError("--manifest and --keep-manifest contradict each other")
    drop = not keep_manifest
    store = open_storage(root, config, writable=not dry_run, fsync=False)
    reader = store.reader
    if yes and not dry_run:
        result = remove(store, refs, manifest=drop)
        _notes(result.plan)
        _finish(store, result, fmt)
        return
    plan = plan_rm(reader, refs, manifest=drop)
    _notes(plan)
    _emit(plan, fmt, "would remove" if dry_run else "to remove")
    if dry_run or not plan.delete:
        return
    confirm(f"Remove {out.entries(len(plan.delete))}?", dry_run=dry_run, yes=yes)
    result = remove(store, refs, manifest=drop, shown=plan)
    for entry in result.skipped:
        out.note(f"left {entry.kind} {entry.id}: it changed before the lock was taken")
    _finish(store, result, fmt)


def _finish(store: Store, result: RmResult, fmt: Format) -> None:
    _emit(result.plan, fmt, "removed")
    for entry, reason in result.failed:
        out.warn(f"could not remove {entry.path}: {reason}")
    if result.journal is not None:
        out.note(f"undo with: regtool restore --last (journal {result.journal.name})")
    if result.failed:
        raise typer.Exit(int(ExitCode.OPERATIONAL))
    if result.plan.delete:
        out.note(gc_outlook(store))


def gc_outlook(store: Store) -> str:
    """What a plain `regtool gc` would free now (its planner, on a fresh read)."""
    options = GcOptions()
    outlook = plan_gc(store.reread(), options)
    if outlook.refused:
        return (
            f"regtool gc would refuse to run: {len(outlook.problems)} objects in use cannot "
            "be read (see regtool verify)"
        )
    swept = [e for e in outlook.delete if e.kind in ("blob", "image")]
    line = (
        f"regtool gc would now free {out.human_size(outlook.bytes)} "
        f"({len(swept)} {'images' if store.layout == 'v1' else 'blobs'}); run: regtool gc"
    )
    if outlook.kept_recent:
        line += (
            " (what was written within gc's 1h grace stays until then; "
            "regtool gc --grace 0 frees it now)"
        )
    return line


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
    return out.grid(rows, ["KIND", "ID", "PATH"]) + f"\n{verb} {out.entries(len(plan.delete))}"
