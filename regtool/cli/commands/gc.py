"""`regtool gc`: plan the garbage, show it, and delete exactly that under the storage lock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.confirm import confirm
from regtool.cli.entry_summary import summary_grid
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, SummaryOpt
from regtool.cli.output import Format
from regtool.layout.detect import load_config
from regtool.layout.store import open_storage
from regtool.model.duration import parse_duration
from regtool.ops.gc import GcEntry, GcOptions, GcPlan, collect_garbage, plan_gc

_LONG_HEX = re.compile(r"(?<![0-9a-f])[0-9a-f]{64,128}(?![0-9a-f])")


@friendly_errors
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the plan; delete nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace", help="Keep anything written this recently (0, 30m, 2h): pushes in flight."
        ),
    ] = "1h",
    delete_untagged: Annotated[
        bool,
        typer.Option(
            "--delete-untagged",
            "-m",
            help="Also drop manifests no tag reaches (index children and artifacts of kept "
            "manifests stay).",
        ),
    ] = False,
    upload_age: Annotated[
        str, typer.Option("--upload-age", help="Remove uploads untouched for this long (v2).")
    ] = "24h",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Sweep even when live manifests or links are unreadable (skips them)."
        ),
    ] = False,
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            help="Wait this long for the storage lock (a serve committing a push, another "
            "gc or rm) instead of failing at once (0, 30s, 10m).",
        ),
    ] = "0",
    summary: SummaryOpt = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Delete what no tag or manifest needs any more, on a live registry's storage.

    Marks every manifest a repository holds (with --delete-untagged: every manifest a tag
    reaches), through indexes to any depth, and sweeps the rest: blobs, dangling layer links,
    stale uploads and emptied repositories on v2; image folders no tag's ancestry needs on
    v1. Anything newer than --grace is kept. Refuses (exit 1) when a live manifest cannot
    be read; holds an exclusive lock on .regtool.lock while it deletes (held by anything
    else, it fails naming the holder, or waits up to --wait). Deletes only what
    it recognises; links inside the storage are never followed nor deleted (listed as
    skipped; one pointing outside where tags live refuses, like an unreadable manifest).

    Example:

        regtool gc --root /var/lib/registry --dry-run --grace 0
    """
    options = GcOptions(
        grace=parse_duration(grace, "--grace"),
        upload_age=parse_duration(upload_age, "--upload-age"),
        delete_untagged=delete_untagged,
        force=force,
    )
    lock_wait = parse_duration(wait, "--wait")
    with progress.shown("gc"):
        store = open_storage(root, config, writable=not dry_run, fsync=False)
    reader = store.reader
    if yes and not dry_run:
        with progress.shown("gc"):
            result = collect_garbage(store, options, wait=lock_wait)
        _report_problems(result.plan)
        _emit(result.plan, fmt, "deleted", summary)
        _after_sweep(result.plan, config, result.failed)
        return
    with progress.shown("gc"):
        plan = plan_gc(reader, options)
    _report_problems(plan)
    _emit(plan, fmt, "would delete" if dry_run else "to delete", summary)
    if dry_run or not plan.delete:
        _after_sweep(plan, config, (), dry_run=True)
        return
    confirm(
        f"Delete {out.entries(len(plan.delete))} ({out.human_size(plan.bytes)})?",
        dry_run=dry_run,
        yes=yes,
    )
    with progress.shown("gc"):
        result = collect_garbage(store, options, shown=plan, wait=lock_wait)
    _report_problems(result.plan)
    for entry in result.skipped:
        out.note(f"kept {entry.kind} {entry.id}: no longer garbage under the lock")
    _emit(result.plan, fmt, "deleted", summary)
    _after_sweep(result.plan, config, result.failed)


def _report_problems(plan: GcPlan) -> None:
    for issue in plan.warnings:
        out.warn(str(issue))
    for issue in plan.skipped:
        out.warn(str(issue))
    if not plan.problems:
        return
    if plan.forced:
        for issue in plan.problems:
            out.warn(f"skipped (--force): {issue}")
        return
    for issue in plan.problems:
        out.note(f"Error: {issue}")
    out.note(
        "Error: gc deleted nothing: what these objects need cannot be proven, so sweeping "
        "could lose live data"
    )
    out.note("Hint: repair or remove the named files (regtool verify), or pass --force")
    raise typer.Exit(int(ExitCode.PROBLEMS))


def _contract(plan: GcPlan) -> dict[str, object]:
    """The documented JSON shape: {"delete": [{kind, id, size, path}], "bytes": N,
    "skipped": [{path, reason}]} (skipped: what gc found and leaves alone)."""
    rows = plan.delete  # GcEntry's fields are kind, id, size, path: written as they are
    left = plan.skipped + (plan.problems if plan.forced else ())
    skipped = [{"path": issue.path, "reason": issue.message} for issue in left]
    return {"delete": rows, "bytes": plan.bytes, "skipped": skipped}


def _emit(plan: GcPlan, fmt: Format, verb: str, summary: bool = False) -> None:
    out.emit(_contract(plan), fmt, lambda: _table(plan, verb, summary))


def _table(plan: GcPlan, verb: str, summary_only: bool = False) -> str:
    summary = f"{verb} {out.entries(len(plan.delete))}, {out.human_size(plan.bytes)}"
    kept = ""
    if plan.kept_recent:
        kept += f"; kept {plan.kept_recent} newer than the grace window"
    if plan.skipped:
        kept += f"; left {len(plan.skipped)} unrecognised objects alone (see warnings)"
    if not plan.delete:
        return f"nothing to delete ({plan.marked} objects in use)" + kept
    if summary_only:
        return summary_grid(plan.delete) + "\n" + summary + kept
    rows = [[e.kind, _short(e), out.human_size(e.size), short_path(e.path)] for e in plan.delete]
    return out.grid(rows, ["KIND", "ID", "SIZE", "PATH"]) + "\n" + summary + kept


def short_path(path: str) -> str:
    """A path with each 64/128-hex component cut to 12 characters, for tables."""
    return _LONG_HEX.sub(lambda m: m.group(0)[:12] + "…", path)


def _short(entry: GcEntry) -> str:
    name, sep, digest = entry.id.rpartition("@")
    if entry.kind in ("blob", "image"):
        return out.short_id(entry.id)
    return f"{name}@{out.short_id(digest)}" if sep else entry.id


def _after_sweep(
    plan: GcPlan,
    config: Path | None,
    failed: tuple[tuple[GcEntry, str], ...],
    *,
    dry_run: bool = False,
) -> None:
    swept = any(entry.kind == "blob" for entry in plan.delete)
    if swept and config is not None and load_config(config).blobdescriptor_cache == "inmemory":
        when = "after this sweep runs" if dry_run else "now"
        out.note(
            f"note: {config} uses storage.cache.blobdescriptor: inmemory; restart that "
            f"registry {when}, or it keeps answering that swept blobs exist and pushes "
            "of them are skipped"
        )
    for entry, reason in failed:
        out.warn(f"could not delete {entry.path}: {reason}")
    if failed:
        raise typer.Exit(int(ExitCode.OPERATIONAL))
