"""Remove tags (and with `manifest`, the manifest's revision link) so gc can free their data.

v1: the `tag_<t>` file, its `tag<t>_json`, and the repository `json` when the tag is
latest. v2: the tag folder; with `manifest`, also the revision link when no remaining tag
of the repository points at the manifest, directly or through an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from regtool.errors import UsageError
from regtool.layout.reader import Issue, RegistryReader, TagLink
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.model.reference import DEFAULT_TAG
from regtool.model.references import Node, node_of, reachable
from regtool.ops.gc import (
    GcEntry,
    delete_entries,
    intersect,
    lock_error,
    writable_driver,
)
from regtool.ops.resolve import locate, resolve_reference
from regtool.storage.driver import StorageError


@dataclass(frozen=True, slots=True)
class RmPlan:
    delete: tuple[GcEntry, ...]
    notes: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.delete)


@dataclass(frozen=True, slots=True)
class RmResult:
    plan: RmPlan  # what was removed
    skipped: tuple[GcEntry, ...] = ()
    failed: tuple[tuple[GcEntry, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Wanted:
    repository: str
    tags: tuple[TagLink, ...]
    digest: str | None  # the manifest to drop too (with `manifest`)


def plan_rm(reader: RegistryReader, refs: Sequence[str], *, manifest: bool = False) -> RmPlan:
    """What removing `refs` deletes; reads only."""
    if not refs:
        raise UsageError("give at least one REF to remove", hint="e.g. regtool rm centos:6.7")
    if reader.layout == "v1" and manifest:
        raise UsageError("--manifest applies to v2 storage only; v1 images are freed by gc")
    wanted = [_find(reader, text, manifest) for text in refs]
    if reader.layout == "v1":
        return _plan_v1(reader, wanted)
    return _plan_v2(reader, wanted)  # type: ignore[arg-type]


def remove(
    store: Store,
    refs: Sequence[str],
    *,
    manifest: bool = False,
    shown: RmPlan | None = None,
) -> RmResult:
    """Under the exclusive storage lock: plan again, delete what both plans name.

    `store` is opened writable (open_storage(writable=True)).
    """
    driver = writable_driver(store)
    try:
        with store.lock(exclusive=True, timeout=0):
            plan = plan_rm(store.reread(), refs, manifest=manifest)
            entries, skipped = intersect(plan.delete, shown.delete if shown else None)
            deleted, failed = delete_entries(driver, entries)
            return RmResult(RmPlan(deleted, plan.notes), skipped, failed)
    except LockTimeout as exc:
        raise lock_error(exc) from None


def _find(reader: RegistryReader, text: str, manifest: bool) -> _Wanted:
    ref, repository = locate(reader, text)
    links = reader.tags(repository)
    if ref.digest:
        if reader.layout == "v1":
            raise UsageError("v1 storage has no digests: give REPO:TAG")
        if not manifest:
            raise UsageError(
                f"{text} names a manifest, not a tag: add --manifest to remove it",
                hint="with --manifest, every tag of the repository pointing at it goes too",
            )
        resolve_reference(reader, text)  # raises when the repository lacks the manifest
        tags = tuple(link for link in links if link.digest == ref.digest)
        return _Wanted(repository, tags, ref.digest)
    tag = ref.tag or DEFAULT_TAG
    for link in links:
        if link.tag == tag:
            return _Wanted(repository, (link,), link.digest if manifest else None)
    resolve_reference(reader, text)  # raises "unknown tag" with suggestions
    raise UsageError(f"unknown tag: {text}")


def _plan_v1(reader: RegistryReader, wanted: list[_Wanted]) -> RmPlan:
    entries: dict[str, GcEntry] = {}
    for want in wanted:
        for link in want.tags:
            label = f"{want.repository}:{link.tag}"
            entries.setdefault(link.path, GcEntry("tag", label, 0, link.path))
            files = [v1paths.tag_json(want.repository, link.tag)]
            if link.tag == DEFAULT_TAG:
                files.append(v1paths.repository_json(want.repository))
            for path in files:
                try:
                    size = reader.driver.stat(path).size
                except StorageError:
                    continue
                entries.setdefault(path, GcEntry("file", label, size, path))
    return RmPlan(tuple(entries.values()))


def _plan_v2(reader: V2Reader, wanted: list[_Wanted]) -> RmPlan:
    entries: dict[str, GcEntry] = {}
    removed: dict[str, set[str]] = {}
    notes: list[str] = []
    for want in wanted:
        for link in want.tags:
            folder = v2paths.tag_dir(want.repository, link.tag)
            entries.setdefault(folder, GcEntry("tag", f"{want.repository}:{link.tag}", 0, folder))
            removed.setdefault(want.repository, set()).add(link.tag)
    for want in wanted:
        if want.digest is None:
            if want.tags and want.tags[0].digest is None:
                notes.append(f"{want.repository}:{want.tags[0].tag} is broken: no manifest dropped")
            continue
        holder = _still_needed(reader, want, removed.get(want.repository, set()))
        label = f"{want.repository}@{want.digest}"
        if holder is not None:
            notes.append(f"kept manifest {label}: {holder} still needs it")
            continue
        if not reader.has_manifest(want.repository, want.digest):
            continue
        folder = v2paths.revision_link(want.repository, want.digest).rpartition("/")[0]
        entries.setdefault(folder, GcEntry("manifest", label, 0, folder))
    return RmPlan(tuple(entries.values()), tuple(notes))


def _still_needed(reader: V2Reader, want: _Wanted, removed: set[str]) -> str | None:
    """The remaining tag of the repository that reaches the manifest, if any: itself, or
    an index listing it at any depth."""

    def load(digest: str) -> Node | None:
        manifest = reader.manifest(digest)
        return None if isinstance(manifest, Issue) else node_of(manifest)

    for link in reader.tags(want.repository):
        if link.tag in removed or link.digest is None:
            continue
        label = f"{want.repository}:{link.tag}"
        if link.digest == want.digest:
            return label
        if want.digest in reachable((link.digest,), load):
            return f"{label} (an index listing it)"
    return None
