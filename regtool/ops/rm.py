"""Remove tags, and the manifests nothing kept needs any more, so that gc frees their data.

v1: the `tag_<t>` file, its `tag<t>_json`, and the repository `json` when the tag is
latest (v1 has no manifests: gc frees the images no tag reaches).

v2: the tag folder, and (unless `manifest=False`) the revision links of the manifests the
removal leaves unneeded, judged per repository with model/references.py's `retained`:

- what the removal drags along is what the removed tags (and REPO@DIGEST) point at, what
  those reach (index children, to any depth) and the artifacts whose `subject` is among
  them (signatures, SBOMs), recursively;
- what stays is what `retained` keeps from the remaining tags and from every revision
  outside that set (an untagged manifest rm was not asked about is left as it is, and so
  is what it reaches), and every manifest that cannot be read;
- the rest of the dragged-along set loses its revision link: exactly the manifests gc
  --delete-untagged would drop among them, so that a plain gc then frees their blobs.

A referrer of a removed manifest does not keep it; a kept index keeps its children. A
manifest named as REPO@DIGEST goes unless a remaining tag or index reaches it, even when it
is an artifact of a kept manifest (removing a signature is asked for by name).
Every run that removes something writes the undo journal (layout/journal.py) first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from regtool.errors import NoMatchError, UsageError
from regtool.layout import journal
from regtool.layout.journal import Journal, Removed
from regtool.layout.reader import Issue, RegistryReader, TagLink
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.model.reference import DEFAULT_TAG
from regtool.model.references import Load, Node, node_of, reachable, retained
from regtool.ops.gc import (
    GcEntry,
    delete_entries,
    intersect,
    lock_error,
    writable_driver,
)
from regtool.ops.resolve import locate, resolve_reference
from regtool.storage.driver import StorageError

GLOB_CHARACTERS = "*?["
MAX_META_BYTES = 1 << 20  # a v1 tag's metadata file kept in the journal


@dataclass(frozen=True, slots=True)
class RmPlan:
    delete: tuple[GcEntry, ...]
    notes: tuple[str, ...] = ()
    # (path of an entry in `delete`, what the journal says of it)
    records: tuple[tuple[str, Removed], ...] = ()

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.delete)

    def removed(self, entries: Sequence[GcEntry]) -> list[Removed]:
        """The journal entries of `entries` (tags and manifests; their files fold in)."""
        paths = {entry.path for entry in entries}
        return [record for path, record in self.records if path in paths]


@dataclass(frozen=True, slots=True)
class RmResult:
    plan: RmPlan  # what was removed
    skipped: tuple[GcEntry, ...] = ()
    failed: tuple[tuple[GcEntry, str], ...] = ()
    journal: Journal | None = None


@dataclass(frozen=True, slots=True)
class _Wanted:
    repository: str
    tags: tuple[TagLink, ...]
    digests: tuple[str, ...]  # manifests whose removal is asked (their tags', or REPO@DIGEST)
    explicit: bool = False  # REPO@DIGEST: the manifest goes even when its subject is kept


def is_glob(text: str) -> bool:
    """Whether a REF's tag part is a glob (`app:pr-*`)."""
    name, colon, tag = text.rpartition(":")
    return (
        bool(colon)
        and "/" not in tag
        and "@" not in text
        and any(c in tag for c in GLOB_CHARACTERS)
    )


def plan_rm(reader: RegistryReader, refs: Sequence[str], *, manifest: bool = True) -> RmPlan:
    """What removing `refs` deletes; reads only. `manifest=False`: tags only (v2)."""
    if not refs:
        raise UsageError("give at least one REF to remove", hint="e.g. regtool rm centos:6.7")
    wanted = [want for text in refs for want in _find(reader, text, manifest)]
    if reader.layout == "v1":
        return _plan_v1(reader, wanted)
    return _plan_v2(reader, wanted, manifest)  # type: ignore[arg-type]


def remove(
    store: Store,
    refs: Sequence[str],
    *,
    manifest: bool = True,
    shown: RmPlan | None = None,
) -> RmResult:
    """Under the exclusive storage lock: plan again, write the journal of what both plans
    name, then delete it.

    `store` is opened writable (open_storage(writable=True)).
    """
    driver = writable_driver(store)
    try:
        with store.lock(exclusive=True, timeout=0, holder="regtool rm"):
            reader = store.reread()
            plan = plan_rm(reader, refs, manifest=manifest)
            entries, skipped = intersect(plan.delete, shown.delete if shown else None)
            written = journal.record(driver, "rm", reader.layout, plan.removed(entries))
            deleted, failed = delete_entries(driver, entries)
            return RmResult(RmPlan(deleted, plan.notes, plan.records), skipped, failed, written)
    except LockTimeout as exc:
        raise lock_error(exc) from None


def _find(reader: RegistryReader, text: str, manifest: bool) -> list[_Wanted]:
    if is_glob(text):
        return [_find_glob(reader, text, manifest)]
    ref, repository = locate(reader, text)
    links = reader.tags(repository)
    if ref.digest:
        if reader.layout == "v1":
            raise UsageError("v1 storage has no digests: give REPO:TAG")
        if not manifest:
            raise UsageError(
                f"{text} names a manifest, not a tag: --keep-manifest cannot apply to it",
                hint="without --keep-manifest, every tag of the repository pointing at it goes too",
            )
        resolve_reference(reader, text)  # raises when the repository lacks the manifest
        tags = tuple(link for link in links if link.digest == ref.digest)
        return [_Wanted(repository, tags, (ref.digest,), explicit=True)]
    tag = ref.tag or DEFAULT_TAG
    for link in links:
        if link.tag == tag:
            return [_wanted(repository, (link,), manifest)]
    resolve_reference(reader, text)  # raises "unknown tag" with suggestions
    raise UsageError(f"unknown tag: {text}")


def _find_glob(reader: RegistryReader, text: str, manifest: bool) -> _Wanted:
    name, _, pattern = text.rpartition(":")
    _, repository = locate(reader, name)
    links = tuple(
        link for link in reader.tags(repository) if fnmatch.fnmatchcase(link.tag, pattern)
    )
    if not links:
        raise NoMatchError(f"no tag of {name} matches {pattern!r}: nothing removed")
    return _wanted(repository, links, manifest)


def _wanted(repository: str, links: tuple[TagLink, ...], manifest: bool) -> _Wanted:
    digests = tuple(link.digest for link in links if link.digest) if manifest else ()
    return _Wanted(repository, links, digests)


def _plan_v1(reader: RegistryReader, wanted: list[_Wanted]) -> RmPlan:
    entries: dict[str, GcEntry] = {}
    records: dict[str, Removed] = {}
    for want in wanted:
        for link in want.tags:
            label = f"{want.repository}:{link.tag}"
            entries.setdefault(link.path, GcEntry("tag", label, 0, link.path))
            meta = {"tag_json": v1paths.tag_json(want.repository, link.tag)}
            if link.tag == DEFAULT_TAG:
                meta["repository_json"] = v1paths.repository_json(want.repository)
            kept: dict[str, str] = {}
            for key, path in meta.items():
                try:
                    size = reader.driver.stat(path).size
                    kept[key] = reader.driver.get(path, MAX_META_BYTES).decode("utf-8", "replace")
                except StorageError:
                    continue
                entries.setdefault(path, GcEntry("file", label, size, path))
            records.setdefault(link.path, Removed(want.repository, link.tag, link.digest, **kept))
    return RmPlan(tuple(entries.values()), (), tuple(records.items()))


def _plan_v2(reader: V2Reader, wanted: list[_Wanted], manifest: bool) -> RmPlan:
    entries: dict[str, GcEntry] = {}
    records: dict[str, Removed] = {}
    removed: dict[str, set[str]] = {}
    asked: dict[str, list[str]] = {}
    explicit: set[str] = set()
    notes: list[str] = []
    for want in wanted:
        for link in want.tags:
            folder = v2paths.tag_dir(want.repository, link.tag)
            entries.setdefault(folder, GcEntry("tag", f"{want.repository}:{link.tag}", 0, folder))
            records.setdefault(folder, Removed(want.repository, link.tag, link.digest))
            removed.setdefault(want.repository, set()).add(link.tag)
            if link.digest is None and manifest:
                notes.append(f"{want.repository}:{link.tag} is broken: no manifest dropped")
        repo_asked = asked.setdefault(want.repository, [])
        repo_asked.extend(d for d in want.digests if d not in repo_asked)
        if want.explicit:
            explicit.update(f"{want.repository}@{d}" for d in want.digests)
    for repository, digests in asked.items():
        if not digests:
            continue
        named = {d for d in digests if f"{repository}@{d}" in explicit}
        drop, kept_notes = _unneeded(
            reader, repository, removed.get(repository, set()), digests, named
        )
        notes.extend(kept_notes)
        for digest in drop:
            folder = v2paths.revision_link(repository, digest).rpartition("/")[0]
            entries.setdefault(folder, GcEntry("manifest", f"{repository}@{digest}", 0, folder))
            records.setdefault(folder, Removed(repository, None, digest))
    return RmPlan(tuple(entries.values()), tuple(notes), tuple(records.items()))


def _unneeded(
    reader: V2Reader, repository: str, removed: set[str], asked: list[str], named: set[str]
) -> tuple[list[str], list[str]]:
    """(manifests of `repository` to drop, notes on asked ones that stay) once the tags
    `removed` are gone and the manifests `asked` are to go (see the module docstring).
    `named` (REPO@DIGEST) stay only when something reaches them: being the artifact of a
    kept manifest does not keep a manifest the user named."""
    nodes: dict[str, Node | None] = {}

    def load(digest: str) -> Node | None:
        if digest not in nodes:
            found = reader.manifest(digest)
            nodes[digest] = None if isinstance(found, Issue) else node_of(found)
        return nodes[digest]

    revisions = [digest for _, digest, _ in reader.revisions(repository) if digest]
    stored = set(revisions)
    dragged = retained(asked, revisions, load)
    remaining = {
        link.tag: link.digest
        for link in reader.tags(repository)
        if link.tag not in removed and link.digest is not None
    }
    untouched = stored - dragged
    candidates = [digest for digest in revisions if digest not in named]
    kept = retained({*remaining.values(), *untouched}, candidates, load)
    drop = sorted(d for d in dragged if d in stored and d not in kept)
    notes = []
    for digest in asked:
        if digest in kept and digest in stored:
            holder = _holder(repository, digest, remaining, sorted(untouched), load)
            notes.append(f"kept manifest {repository}@{digest}: {holder} still needs it")
    return drop, notes


def _holder(
    repository: str,
    digest: str,
    remaining: dict[str, str],
    untouched: list[str],
    load: Load,
) -> str:
    """What keeps `digest`, for the note: a tag, an untagged manifest, or its subject."""
    for tag, target in sorted(remaining.items()):
        label = f"{repository}:{tag}"
        if target == digest:
            return label
        if digest in reachable((target,), load):
            return f"{label} (an index listing it)"
    for other in untouched:
        if other != digest and digest in reachable((other,), load):
            return f"{repository}@{other} (an untagged index listing it)"
    if load(digest) is None:
        return "gc (the manifest cannot be read, so what it needs is unknown)"
    return "a kept manifest (it is an artifact of one)"
