"""`restore`: bring back what an `rm` or `prune` removed, from its undo journal.

A removed manifest comes back (its revision link, and the layer links of its blobs) when
its blob and every blob it references are still stored: config and layers, and for an
index every child manifest with its own blobs, to any depth. A removed tag comes back (its
tag links, through the V2Writer as a push writes them; v1: `tag_<t>` and the metadata files
rm removed with it) under the same condition on the manifest (v1: every image of its
ancestry, json and layer). What gc has swept since is reported lost, with the blob that is
gone. A tag that exists again pointing elsewhere is left alone (drift); one pointing at the
same manifest, and a manifest linked again, are already present: restore is idempotent.
The journal is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from regtool.errors import UsageError
from regtool.layout import journal
from regtool.layout.journal import Journal, Removed
from regtool.layout.reader import Issue, RegistryReader, TagLink
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v1.reader import V1Reader
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.model.references import node_of
from regtool.ops.gc import lock_error, writable_driver
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError


@dataclass(frozen=True, slots=True)
class RestoreItem:
    kind: str  # tag | manifest
    id: str  # repo:tag or repo@digest
    digest: str | None  # the manifest (v1: image id) it names
    reason: str = ""  # for lost and drift: why it does not come back


@dataclass(frozen=True, slots=True)
class Closure:
    """What bringing one manifest (or v1 image) back needs: manifests to link (v2), blobs
    to link into the repository (v2), or the first missing object as `lost`."""

    manifests: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()
    lost: str | None = None


@dataclass(frozen=True, slots=True)
class RestorePlan:
    journal: str
    layout: str
    restore: tuple[RestoreItem, ...]
    present: tuple[RestoreItem, ...] = ()
    drift: tuple[RestoreItem, ...] = ()
    lost: tuple[RestoreItem, ...] = ()
    records: tuple[tuple[RestoreItem, Removed], ...] = ()


@dataclass(frozen=True, slots=True)
class RestoreResult:
    plan: RestorePlan  # `restore`: what was written
    skipped: tuple[RestoreItem, ...] = ()  # shown, no longer to restore under the lock
    failed: tuple[tuple[RestoreItem, str], ...] = ()


def find_journal(driver: StorageDriver, name: str | None) -> Journal:
    """The journal `name` (a file name or a path ending in one), or the newest one."""
    return journal.last(driver) if name is None else journal.read(driver, name)


def plan_restore(reader: RegistryReader, found: Journal) -> RestorePlan:
    """What restoring `found` would write; reads only."""
    if reader.layout != found.layout:
        raise UsageError(
            f"journal {found.name} is of a {found.layout} storage; this one is {reader.layout}"
        )
    buckets: dict[str, list[RestoreItem]] = {"restore": [], "present": [], "drift": [], "lost": []}
    records: list[tuple[RestoreItem, Removed]] = []
    seen: set[tuple[str, str]] = set()
    # manifests first: a tag comes back after what it names
    for removed in sorted(found.removed, key=lambda r: r.tag is not None):
        status, item = _judge(reader, removed)
        if (item.kind, item.id) in seen:
            continue
        seen.add((item.kind, item.id))
        buckets[status].append(item)
        if status == "restore":
            records.append((item, removed))
    return RestorePlan(
        found.name,
        found.layout,
        tuple(buckets["restore"]),
        tuple(buckets["present"]),
        tuple(buckets["drift"]),
        tuple(buckets["lost"]),
        tuple(records),
    )


def restore(store: Store, name: str | None, shown: RestorePlan | None = None) -> RestoreResult:
    """Under the exclusive storage lock: plan again, write what both plans restore."""
    driver = writable_driver(store)
    try:
        with store.lock(exclusive=True, timeout=0, holder="regtool restore"):
            reader = store.reread()
            found = find_journal(driver, name if shown is None else shown.journal)
            plan = plan_restore(reader, found)
            wanted = {(i.kind, i.id) for i in shown.restore} if shown is not None else None
            done: list[RestoreItem] = []
            failed: list[tuple[RestoreItem, str]] = []
            for item, removed in plan.records:
                if wanted is not None and (item.kind, item.id) not in wanted:
                    continue
                try:
                    _write(store, reader, removed)
                except (StorageError, OSError) as exc:
                    failed.append((item, str(exc)))
                    continue
                done.append(item)
            skipped: tuple[RestoreItem, ...] = ()
            if shown is not None:
                fresh = {(i.kind, i.id) for i in plan.restore}
                skipped = tuple(i for i in shown.restore if (i.kind, i.id) not in fresh)
            result_plan = RestorePlan(
                plan.journal,
                plan.layout,
                tuple(done),
                plan.present,
                plan.drift,
                plan.lost,
                (),
            )
            return RestoreResult(result_plan, skipped, tuple(failed))
    except LockTimeout as exc:
        raise lock_error(exc) from None


# -- judging one journal entry ---------------------------------------------------------------
def _judge(reader: RegistryReader, removed: Removed) -> tuple[str, RestoreItem]:
    repo, digest = removed.repository, removed.digest
    if removed.tag is None:
        item = RestoreItem("manifest", f"{repo}@{digest}", digest)
        if digest is None:
            return "lost", _why(item, "the journal names no digest")
        if reader.layout != "v1" and reader.has_manifest(repo, digest):
            return "present", item
        return _complete(reader, item, digest)
    item = RestoreItem("tag", f"{repo}:{removed.tag}", digest)
    if digest is None:
        return "lost", _why(item, "the tag was already broken when it was removed")
    current = _current(reader, repo, removed.tag)
    if current is not None:
        if current.digest == digest:
            return "present", item
        now = current.digest or "an unreadable link"
        return "drift", _why(item, f"the tag now points at {now}: left alone")
    return _complete(reader, item, digest)


def _complete(reader: RegistryReader, item: RestoreItem, digest: str) -> tuple[str, RestoreItem]:
    closure = needs(reader, digest)
    if closure.lost is not None:
        return "lost", _why(item, closure.lost)
    return "restore", item


def _why(item: RestoreItem, reason: str) -> RestoreItem:
    return RestoreItem(item.kind, item.id, item.digest, reason)


def _current(reader: RegistryReader, repository: str, tag: str) -> TagLink | None:
    try:
        links = reader.tags(repository)
    except PathNotFound:
        return None
    return next((link for link in links if link.tag == tag), None)


def needs(reader: RegistryReader, digest: str) -> Closure:
    """What bringing `digest` back needs, or the first stored object that is gone."""
    if isinstance(reader, V1Reader):
        return _needs_v1(reader, digest)
    assert isinstance(reader, V2Reader)
    manifests: list[str] = []
    blobs: dict[str, None] = {}
    stack = [digest]
    while stack:
        current = stack.pop()
        if current in manifests:
            continue
        if not reader.driver.exists(v2paths.blob_data(current)):
            return Closure(lost=f"manifest {current} was swept by gc")
        parsed = reader.manifest(current)
        if isinstance(parsed, Issue):
            return Closure(lost=f"manifest {current} cannot be read: {parsed.message}")
        manifests.append(current)
        node = node_of(parsed)
        for blob in node.blobs:
            if not reader.driver.exists(v2paths.blob_data(blob)):
                return Closure(lost=f"blob {blob} of {current} was swept by gc")
            blobs[blob] = None
        stack.extend(node.children)
    return Closure(tuple(manifests), tuple(blobs))


def _needs_v1(reader: V1Reader, image: str) -> Closure:
    chain, _ = reader.chain(image)
    for image_id in chain:
        for path in (v1paths.image_json(image_id), v1paths.image_layer(image_id)):
            if not reader.driver.exists(path):
                return Closure(lost=f"image {image_id} was swept by gc")
    return Closure()


# -- writing ---------------------------------------------------------------------------------
def _write(store: Store, reader: RegistryReader, removed: Removed) -> None:
    assert removed.digest is not None
    if reader.layout == "v1":
        assert removed.tag is not None
        _write_v1(store.driver, removed)
        return
    writer = store.writer
    if writer is None:
        raise ValueError("restoring needs a store opened with open_storage(writable=True)")
    repo = removed.repository
    closure = needs(reader, removed.digest)
    for blob in closure.blobs:
        if not reader.driver.exists(v2paths.layer_link(repo, blob)):
            writer.link_blob(repo, blob)
    for manifest in reversed(closure.manifests):  # children before the index naming them
        if not reader.has_manifest(repo, manifest):
            writer.link_manifest(repo, manifest)
    if removed.tag is not None:
        writer.tag(repo, removed.tag, removed.digest)


def _write_v1(driver: StorageDriver, removed: Removed) -> None:
    repo, tag = removed.repository, removed.tag
    assert tag is not None and removed.digest is not None
    files: Iterable[tuple[str, str | None]] = (
        (v1paths.tag_json(repo, tag), removed.tag_json),
        (v1paths.repository_json(repo), removed.repository_json),
    )
    for path, text in files:  # metadata first: the tag file makes the tag exist
        if text is not None and not driver.exists(path):
            driver.put(path, text.encode())
    driver.put(v1paths.tag_file(repo, tag), removed.digest.encode())
