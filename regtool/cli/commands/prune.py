"""`regtool prune --policy FILE`: apply a retention policy, then sweep what it frees."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.commands.gc import _after_sweep, _report_problems
from regtool.cli.confirm import confirm
from regtool.cli.entry_summary import summary_grid
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, SummaryOpt
from regtool.cli.output import Format
from regtool.layout.store import open_storage
from regtool.model.duration import parse_duration
from regtool.ops.gc import GcOptions
from regtool.ops.inventory import short_name
from regtool.ops.policy_file import load_policies
from regtool.ops.prune import PrunePlan, PruneResult, apply_prune, plan_prune


@friendly_errors
def prune(
    policy: Annotated[
        Path,
        typer.Option(
            "--policy", "-p", help="The retention policy file (YAML).", show_default=False
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the plan; delete nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="The sweep keeps anything written this recently (0, 30m, 2h), as gc does.",
        ),
    ] = "1h",
    upload_age: Annotated[
        str, typer.Option("--upload-age", help="Remove uploads untouched for this long (v2).")
    ] = "24h",
    summary: SummaryOpt = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Remove the tags a retention policy does not keep, then free what that leaves unused.

    The policy file (YAML):

        policies:
          - repositories: ["app", "team/**"]
            keep:
              - patterns: ["^latest$", "^stable$"]
              - patterns: ["^v[0-9]+$"]
                most_recent: 3
              - patterns: ["^v[0-9]+$"]
                pushed_within: 10d
            untagged: delete
            allow_empty: false

    The first policy one of whose `repositories` globs matches a repository governs it (`*`
    matches within one path segment, `**` across `/`, `?` one character; `library/NAME`
    also answers to NAME); repositories no policy names are untouched. A tag is kept if
    any `keep` rule keeps it, other tags are removed. A rule's `patterns` are Python
    regular expressions searched in the tag name (at most 3 variable-length quantifiers,
    none nested: patterns that could run for minutes are refused); alone, a rule keeps
    every match; with `most_recent: N` the N most recently pushed matches, with
    `pushed_within: DURATION` (s, m, h, d, w) the matches pushed that recently, with both,
    either. A tag's push time is when its tag link was last written (v2:
    `_manifests/tags/TAG/current/link`, v1: `tag_TAG`, an object store: LastModified).
    Manifests the removed tags alone needed go too (never an index child or artifact of a
    kept image); `untagged: delete` (default keep) also drops manifests no remaining tag
    reaches, except those written within --grace. A policy that would remove every tag
    of a repository is refused unless `allow_empty: true`.

    Then, in the same run and under the storage lock, the blobs, layer links and emptied
    repositories gc would sweep afterwards are swept (v1: image folders no tag reaches),
    keeping anything written within --grace. --dry-run shows the plan with the exact bytes
    freed; otherwise it is shown and confirmed (--yes skips the question; no terminal and
    no --yes: refused, exit 2). A tag that moved between the plan and the deletion is left
    alone and reported. Every run that removes something writes an undo journal
    (.regtool/journal, see restore). A bad policy file: one line naming its line, exit 2,
    nothing touched.

    Example:

        regtool prune --policy retention.yml --dry-run --grace 0
    """
    policies = load_policies(policy)
    options = GcOptions(
        grace=parse_duration(grace, "--grace"),
        upload_age=parse_duration(upload_age, "--upload-age"),
    )
    with progress.shown("prune"):
        store = open_storage(root, config, writable=not dry_run, fsync=False)
    if yes and not dry_run:
        with progress.shown("prune"):
            result = apply_prune(store, policies, options)
        _finish(result.plan, fmt, "removed", config, result, summary)
        return
    with progress.shown("prune"):
        plan = plan_prune(store.reader, policies, options)
    _report_problems(plan.sweep)
    _emit(plan, fmt, "would remove" if dry_run else "to remove", summary=summary)
    if dry_run or not plan.delete:
        _after_sweep(plan.sweep, config, (), dry_run=True)
        return
    confirm(
        f"Delete {out.entries(len(plan.delete))} ({out.human_size(plan.bytes)})?",
        dry_run=dry_run,
        yes=yes,
    )
    with progress.shown("prune"):
        result = apply_prune(store, policies, options, shown=plan)
    _finish(result.plan, fmt, "removed", config, result, summary)


def _finish(
    plan: PrunePlan,
    fmt: Format,
    verb: str,
    config: Path | None,
    result: PruneResult,
    summary: bool = False,
) -> None:
    _report_problems(plan.sweep)
    for label in result.moved:
        out.note(f"left {label} alone: the tag moved since the plan was shown")
    for entry in result.skipped:
        out.note(f"kept {entry.kind} {entry.id}: no longer removed under the lock")
    _emit(plan, fmt, verb, result.moved, summary)
    if result.journal:
        out.note(f"journal: .regtool/journal/{result.journal} (regtool restore --last undoes it)")
    _after_sweep(plan.sweep, config, result.failed)


def contract(plan: PrunePlan, moved: tuple[str, ...] = ()) -> dict[str, object]:
    """gc's JSON shape plus `keep`: {"delete": [{kind, id, size, path}], "bytes": N,
    "keep": [{id, rule}], "skipped": [{path, reason}]} (and `moved` after a real run)."""
    rows = [{"kind": e.kind, "id": e.id, "size": e.size, "path": e.path} for e in plan.delete]
    sweep = plan.sweep
    left = sweep.skipped + (sweep.problems if sweep.forced else ())
    doc: dict[str, object] = {
        "delete": rows,
        "bytes": plan.bytes,
        "keep": [{"id": kept.id, "rule": kept.rule} for kept in plan.keep],
        "skipped": [{"path": issue.path, "reason": issue.message} for issue in left],
    }
    if moved:
        doc["moved"] = list(moved)
    return doc


def _emit(
    plan: PrunePlan, fmt: Format, verb: str, moved: tuple[str, ...] = (), summary: bool = False
) -> None:
    out.emit(contract(plan, moved), fmt, lambda: _table(plan, verb, summary))


def _table(plan: PrunePlan, verb: str, summary_only: bool = False) -> str:
    rows = [
        [
            short_name(row.repository),
            str(row.removed),
            out.human_size(row.removed_bytes),
            str(row.kept),
            out.human_size(row.kept_bytes),
        ]
        for row in plan.repos
    ]
    manifests = sum(1 for entry in plan.delete if entry.kind == "manifest")
    tags = sum(1 for entry in plan.tags if entry.kind == "tag")
    summary = (
        f"{verb} {tags} tags and {manifests} manifests in {len(plan.repos)} repositories; "
        f"{out.entries(len(plan.delete))}, {out.human_size(plan.bytes)} freed"
    )
    if plan.sweep.kept_recent:
        summary += f"; kept {plan.sweep.kept_recent} newer than the grace window"
    if not rows:
        return "no repository is governed by the policy: nothing to remove"
    if summary_only:
        return summary_grid(plan.delete) + "\n" + summary
    headers = ["REPOSITORY", "REMOVED", "FREED", "KEPT", "KEPT SIZE"]
    return out.grid(rows, headers) + "\n" + summary
