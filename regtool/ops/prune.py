"""`prune --policy FILE`: remove the tags a retention policy does not keep, the manifests
only they needed, and sweep what that frees, in one locked run.

The plan is gc's plan on the tree as it would be after the removals (v2: prune_v2.py; v1:
gc_v1 over the tags that remain), plus the removed tags themselves, so `--dry-run` bytes
are what the real run frees. The real run takes the exclusive lock, plans again, leaves
alone any tag that moved since the plan was shown (and everything that tag reaches: it is
planned again as kept), writes the undo journal, deletes tags, manifests and links, and
deletes blobs only when a gc plan made just then still names them (`delete_planned`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from regtool.layout import journal
from regtool.layout.reader import RegistryReader, TagLink
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.model.policy import Policies, Policy, PolicyError, TagTime, decide
from regtool.model.reference import DEFAULT_TAG
from regtool.ops.gc import (
    GcEntry,
    GcOptions,
    GcPlan,
    delete_planned,
    intersect,
    lock_error,
    ordered,
    writable_driver,
)
from regtool.storage.driver import StorageError

Pinned = frozenset[tuple[str, str]]  # (repository, tag) kept whatever the policy says


@dataclass(frozen=True, slots=True)
class Kept:
    id: str  # repo:tag
    rule: str  # `policy N keep M: KEY VALUE`, or why it was left alone


@dataclass(frozen=True, slots=True)
class RepoRow:
    """One governed repository in the plan: tags removed and kept, bytes freed (blobs the
    sweep frees that its removed manifests referenced) and bytes its kept tags need."""

    repository: str
    removed: int
    removed_bytes: int
    kept: int
    kept_bytes: int


@dataclass(frozen=True)  # no slots: `delete` is computed once, on first use
class PrunePlan:
    layout: str
    sweep: GcPlan  # gc's plan after the removals (manifests, links, blobs, ...)
    tags: tuple[GcEntry, ...]  # the removed tags (v1: and their metadata files)
    removed: tuple[journal.Removed, ...]  # removed tags with their digests, then manifests
    keep: tuple[Kept, ...]
    repos: tuple[RepoRow, ...]

    @cached_property
    def delete(self) -> tuple[GcEntry, ...]:
        return ordered(self.tags + self.sweep.delete)

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.delete)

    @property
    def refused(self) -> bool:
        return self.sweep.refused

    def digests(self) -> dict[tuple[str, str], str | None]:
        """(repository, tag) -> the digest each removed tag named."""
        return {(r.repository, r.tag): r.digest for r in self.removed if r.tag is not None}


@dataclass(frozen=True, slots=True)
class PruneResult:
    plan: PrunePlan  # `delete` is what was deleted
    moved: tuple[str, ...] = ()  # repo:tag moved since the plan was shown: left alone
    skipped: tuple[GcEntry, ...] = ()  # shown entries no longer removed
    failed: tuple[tuple[GcEntry, str], ...] = ()
    journal: str | None = None  # the journal's name


def plan_prune(
    reader: RegistryReader,
    policies: Policies,
    options: GcOptions,
    *,
    exact: bool = False,
    pinned: Pinned = frozenset(),
) -> PrunePlan:
    """What applying `policies` removes and frees; reads only. PolicyError when a policy
    would remove every tag of a repository without `allow_empty: true`."""
    now = options.now if options.now is not None else time.time()
    sweep_options = GcOptions(options.grace, options.upload_age, False, options.force, now)
    if reader.layout == "v1":
        plan = _plan_v1(reader, policies, sweep_options, now, pinned)
    else:
        plan = _plan_v2(reader, policies, sweep_options, now, exact, pinned)
    return plan


def _plan_v2(
    reader: RegistryReader,
    policies: Policies,
    options: GcOptions,
    now: float,
    exact: bool,
    pinned: Pinned,
) -> PrunePlan:
    from regtool.ops.prune_v2 import plan_prune_v2

    sweep, outcomes = plan_prune_v2(reader, policies, options, now, exact, pinned)  # type: ignore[arg-type]
    for outcome in outcomes:
        if outcome.removed and not outcome.kept and not outcome.allow_empty:
            _refuse_empty(
                policies,
                outcome.policy_line,
                outcome.policy,
                outcome.repository,
                len(outcome.removed),
            )
    sizes = {entry.id: entry.size for entry in sweep.delete if entry.kind == "blob"}
    tags: list[GcEntry] = []
    removed: list[journal.Removed] = []
    keep: list[Kept] = []
    rows: list[RepoRow] = []
    for outcome in outcomes:
        name = outcome.repository
        for tag, digest in outcome.removed:
            folder = v2paths.tag_dir(name, tag)
            tags.append(GcEntry("tag", f"{name}:{tag}", 0, folder))
            removed.append(journal.Removed(name, tag, digest))
        keep.extend(Kept(f"{name}:{tag}", rule) for tag, rule in outcome.kept)
        freed = sum(sizes.get(blob, 0) for blob in outcome.dropped_blobs)
        rows.append(
            RepoRow(name, len(outcome.removed), freed, len(outcome.kept), outcome.kept_bytes)
        )
    for entry in sweep.delete:
        if entry.kind == "manifest":
            repository, _, digest = entry.id.rpartition("@")
            removed.append(journal.Removed(repository, None, digest))
    return PrunePlan("v2", sweep, tuple(tags), tuple(removed), tuple(keep), tuple(rows))


def _refuse_empty(policies: Policies, line: int, number: int, repository: str, count: int) -> None:
    raise PolicyError(
        f"{policies.source}:{line}: policy {number} would remove every tag of {repository} "
        f"({count} tags): nothing was changed",
        hint="add a keep rule that matches, or set allow_empty: true in that policy",
    )


class _WithoutTags:
    """A v1 reader on which some tags are already gone (for gc_v1's plan)."""

    def __init__(self, reader: RegistryReader, gone: set[tuple[str, str]]) -> None:
        self._reader = reader
        self._gone = gone

    def tags(self, repository: str, *, pushed: bool = False) -> list[TagLink]:
        links = self._reader.tags(repository, pushed=pushed)
        return [link for link in links if (repository, link.tag) not in self._gone]

    def __getattr__(self, name: str) -> object:
        return getattr(self._reader, name)


def _plan_v1(
    reader: RegistryReader,
    policies: Policies,
    options: GcOptions,
    now: float,
    pinned: Pinned,
) -> PrunePlan:
    from regtool.ops.gc_v1 import plan_v1

    gone: set[tuple[str, str]] = set()
    tags: list[GcEntry] = []
    removed: list[journal.Removed] = []
    keep: list[Kept] = []
    governed: list[tuple[str, list[TagLink], list[TagLink]]] = []
    for repository in reader.repositories():
        name = repository.name
        policy = policies.governing(name)
        if policy is None:
            continue
        links = reader.tags(name, pushed=True)
        verdict = _decide(policy, links, now, pinned)
        out = [link for link in links if link.digest is not None and verdict[link.tag] is None]
        if out and len(out) == len(links) and not policy.allow_empty:
            _refuse_empty(policies, policy.line, policy.number, name, len(out))
        for link in links:
            rule = verdict.get(link.tag)
            if link in out:
                continue
            keep.append(Kept(f"{name}:{link.tag}", rule or "unreadable tag file: left alone"))
        for link in out:
            gone.add((name, link.tag))
            removed.append(journal.Removed(name, link.tag, link.digest))
            tags.extend(_v1_tag_entries(reader, name, link))
        governed.append((name, out, [link for link in links if link not in out]))
    sweep = plan_v1(_WithoutTags(reader, gone), options, now)  # type: ignore[arg-type]
    sizes = {entry.id: entry.size for entry in sweep.delete if entry.kind == "image"}
    rows = []
    for name, out, kept in governed:
        freed = _chain_images(reader, out)
        kept_images = _chain_images(reader, kept)
        kept_bytes = 0
        for image_id in kept_images:
            info = reader.image(image_id)  # type: ignore[attr-defined]
            kept_bytes += info.layer_size or 0
        rows.append(
            RepoRow(name, len(out), sum(sizes.get(i, 0) for i in freed), len(kept), kept_bytes)
        )
    return PrunePlan("v1", sweep, tuple(tags), tuple(removed), tuple(keep), tuple(rows))


def _decide(
    policy: Policy, links: list[TagLink], now: float, pinned: Pinned
) -> dict[str, str | None]:
    readable = [link for link in links if link.digest is not None]
    times = [TagTime(link.tag, link.pushed or 0.0) for link in readable]
    verdict = decide(policy, times, now)
    for link in readable:
        if verdict[link.tag] is None and (link.repository, link.tag) in pinned:
            verdict[link.tag] = "moved since the plan was shown: left alone"
    return verdict


def _chain_images(reader: RegistryReader, links: Iterable[TagLink]) -> set[str]:
    found: set[str] = set()
    for link in links:
        if link.digest is not None:
            chain, _ = reader.chain(link.digest)  # type: ignore[attr-defined]
            found.update(chain)
    return found


def _v1_tag_entries(reader: RegistryReader, repository: str, link: TagLink) -> list[GcEntry]:
    """The tag file, its `tag<t>_json`, and the repository `json` for `latest` (as rm)."""
    label = f"{repository}:{link.tag}"
    entries = [GcEntry("tag", label, 0, link.path)]
    files = [v1paths.tag_json(repository, link.tag)]
    if link.tag == DEFAULT_TAG:
        files.append(v1paths.repository_json(repository))
    for path in files:
        try:
            size = reader.driver.stat(path).size
        except StorageError:
            continue
        entries.append(GcEntry("file", label, size, path))
    return entries


def apply_prune(
    store: Store, policies: Policies, options: GcOptions, shown: PrunePlan | None = None
) -> PruneResult:
    """Under the exclusive lock: plan again (tags moved since `shown` are left alone),
    journal, then delete what both plans name, blobs only if gc still agrees."""
    driver = writable_driver(store)
    try:
        with store.lock(exclusive=True, timeout=0):
            plan = plan_prune(store.reread(), policies, options, exact=True)
            moved: frozenset[tuple[str, str]] = frozenset()
            if shown is not None:
                before, now = shown.digests(), plan.digests()
                moved = frozenset(
                    key for key, digest in before.items() if key in now and now[key] != digest
                )
                if moved:
                    plan = plan_prune(store.reread(), policies, options, exact=True, pinned=moved)
            if plan.refused:
                return PruneResult(_only(plan, ()), _labels(moved))
            entries, skipped = intersect(plan.delete, shown.delete if shown else None)
            paths = {entry.path for entry in entries}
            removed = [r for r in plan.removed if _removed_path(plan.layout, r) in paths]
            written = journal.record(driver, "prune", plan.layout, removed)
            sweep = GcOptions(options.grace, options.upload_age, False, options.force, options.now)
            deleted, late, failed = delete_planned(store, driver, sweep, entries)
            return PruneResult(
                _only(plan, deleted),
                _labels(moved),
                skipped + late,
                failed,
                written.name if written else None,
            )
    except LockTimeout as exc:
        raise lock_error(exc) from None


def _removed_path(layout: str, removed: journal.Removed) -> str:
    if layout == "v1":
        assert removed.tag is not None
        return v1paths.tag_file(removed.repository, removed.tag)
    if removed.tag is not None:
        return v2paths.tag_dir(removed.repository, removed.tag)
    assert removed.digest is not None
    return v2paths.revision_link(removed.repository, removed.digest).rpartition("/")[0]


def _labels(keys: frozenset[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(sorted(f"{repository}:{tag}" for repository, tag in keys))


def _only(plan: PrunePlan, deleted: tuple[GcEntry, ...]) -> PrunePlan:
    """`plan` with only `deleted` left in it (what a real run removed)."""
    keys = {(entry.kind, entry.path) for entry in deleted}
    sweep = plan.sweep
    kept_sweep = tuple(e for e in sweep.delete if (e.kind, e.path) in keys)
    tags = tuple(e for e in plan.tags if (e.kind, e.path) in keys)
    paths = {entry.path for entry in deleted}
    removed = tuple(r for r in plan.removed if _removed_path(plan.layout, r) in paths)
    return PrunePlan(
        plan.layout,
        GcPlan(
            sweep.layout,
            kept_sweep,
            sweep.problems,
            sweep.warnings,
            sweep.marked,
            sweep.kept_recent,
            sweep.forced,
            sweep.skipped,
        ),
        tags,
        removed,
        plan.keep,
        plan.repos,
    )
