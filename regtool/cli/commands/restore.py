"""`regtool restore`: undo an rm or prune from its journal, while gc has not swept the data."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.confirm import confirm
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt
from regtool.cli.output import Format
from regtool.errors import UsageError
from regtool.layout.store import open_storage
from regtool.ops.restore import RestoreItem, RestorePlan, find_journal, plan_restore, restore


@friendly_errors
def restore_command(
    file: Annotated[
        str | None,
        typer.Argument(
            help="A journal's name (as rm printed it; a path ending in it is accepted).",
            show_default=False,
        ),
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="Restore from the newest journal.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the plan; write nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Restore without asking.")] = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Re-create the tags and manifests an rm or prune removed, from its undo journal
    (`.regtool/journal/` in the storage), as long as gc has not swept their blobs.

    A manifest comes back when its blob and everything it references (config, layers,
    index children with theirs) are still stored; what gc swept is listed as lost. A tag
    that exists again pointing elsewhere is left alone. Running it twice writes nothing the
    second time. Exit 1 when anything could not come back.

    Example:

        regtool restore --last --root /var/lib/registry --dry-run
    """
    if (file is None) == (not last):
        raise UsageError(
            "give either --last or a journal FILE"
            if file is None
            else "give FILE or --last, not both",
            hint="rm prints the journal it writes; they are in .regtool/journal/ in the storage",
        )
    store = open_storage(root, config, writable=not dry_run)
    if yes and not dry_run:
        result = restore(store, file)
        _finish(result.plan, fmt, result.failed)
        return
    plan = plan_restore(store.reader, find_journal(store.driver, file))
    _emit(plan, fmt, "would restore" if dry_run else "to restore")
    if dry_run or not plan.restore:
        _exit(plan, ())
        return
    confirm(
        f"Restore {out.entries(len(plan.restore))}?",
        dry_run=dry_run,
        yes=yes,
    )
    result = restore(store, file, shown=plan)
    for item in result.skipped:
        out.note(f"left {item.kind} {item.id}: it changed before the lock was taken")
    _finish(result.plan, fmt, result.failed)


def _finish(plan: RestorePlan, fmt: Format, failed: tuple) -> None:
    _emit(plan, fmt, "restored")
    _exit(plan, failed)


def _exit(plan: RestorePlan, failed: tuple) -> None:
    for item, reason in failed:
        out.warn(f"could not restore {item.kind} {item.id}: {reason}")
    if failed:
        raise typer.Exit(int(ExitCode.OPERATIONAL))
    if plan.lost or plan.drift:
        raise typer.Exit(int(ExitCode.PROBLEMS))


def _rows(items: tuple[RestoreItem, ...], reasons: bool = False) -> list[dict]:
    keys = ("kind", "id", "digest", "reason") if reasons else ("kind", "id", "digest")
    return [{key: getattr(item, key) for key in keys} for item in items]


def _emit(plan: RestorePlan, fmt: Format, verb: str) -> None:
    doc = {
        "restore": _rows(plan.restore),
        "present": _rows(plan.present),
        "drift": _rows(plan.drift, True),
        "lost": _rows(plan.lost, True),
        "journal": plan.journal,
    }
    out.emit(doc, fmt, lambda: _table(plan, verb))


def _table(plan: RestorePlan, verb: str) -> str:
    rows = [[i.kind, _short(i.id), "restore", ""] for i in plan.restore]
    rows += [[i.kind, _short(i.id), "drift", i.reason] for i in plan.drift]
    rows += [[i.kind, _short(i.id), "lost", i.reason] for i in plan.lost]
    summary = f"{verb} {out.entries(len(plan.restore))} from journal {plan.journal}"
    extra = []
    if plan.present:
        extra.append(f"{len(plan.present)} already present")
    if plan.drift:
        extra.append(f"{len(plan.drift)} left alone (the tag moved)")
    if plan.lost:
        extra.append(f"{len(plan.lost)} lost (gc swept their data)")
    if extra:
        summary += "; " + ", ".join(extra)
    if not rows:
        return summary
    return out.grid(rows, ["KIND", "ID", "ACTION", "REASON"]) + "\n" + summary


def _short(ident: str) -> str:
    name, sep, digest = ident.rpartition("@")
    return f"{name}@{out.short_id(digest)}" if sep else ident
