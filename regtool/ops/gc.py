"""Garbage collection on both layouts: plan what is unreachable, then delete exactly that.

The plan is computed without writing anything (`plan_gc`). `collect_garbage` takes the
exclusive storage lock, plans again under it and deletes the entries present in both the
plan the user saw and the fresh one, so nothing that became live in between is touched.
Deletion order never leaves a tag naming a missing object: tag index links and revision
links go first, then layer links, uploads and repositories, and blobs or images last.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from regtool.errors import LockHeldError
from regtool.layout.reader import Issue, RegistryReader
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v2 import paths as v2paths
from regtool.storage.driver import SHARED as LOCK_SHARED
from regtool.storage.driver import StorageDriver, StorageError

DEFAULT_GRACE = 3600.0  # 1h: pushes in flight (blobs before their manifest) survive
DEFAULT_UPLOAD_AGE = 86400.0  # 24h, the same default as verify's stale-upload check

# Deletion order: what references comes before what it references, so that an interrupted
# run leaves nothing that names a deleted object. Tags and their index entries name
# manifests; manifests are served through the layer links of their repository; blobs last.
PHASES = {
    "tag": 0,
    "link": 0,
    "file": 0,
    "manifest": 1,
    "upload": 2,
    "multipart": 2,
    "temp": 2,
    "repository": 3,
}
LAYER_LINK_PHASE = 2  # a `_layers` link: after the manifests that need it
LAST_PHASE = 4  # blob, image


def phase(entry: GcEntry) -> int:
    """When `entry` is deleted (see PHASES)."""
    if entry.kind == "link" and v2paths.in_layers(entry.path):
        return LAYER_LINK_PHASE
    return PHASES.get(entry.kind, LAST_PHASE)


@dataclass(frozen=True, slots=True)
class GcEntry:
    """One thing to delete: `path` relative to the storage root, `size` in bytes removed."""

    kind: str  # blob | manifest | link | upload | temp | repository | image (rm: tag | file)
    id: str
    size: int
    path: str


@dataclass(frozen=True, slots=True)
class GcOptions:
    grace: float = DEFAULT_GRACE
    upload_age: float = DEFAULT_UPLOAD_AGE
    delete_untagged: bool = False
    force: bool = False
    now: float | None = None  # the clock, for tests


@dataclass(frozen=True, slots=True)
class GcPlan:
    """What gc would delete, and why it might refuse to.

    `problems` are live objects gc cannot read (an unreadable manifest, a malformed link, a
    broken v1 chain, a link to outside the tree where tags live): with any of them the plan
    is refused unless `forced`. `skipped` are objects gc met and leaves alone: links and
    special files (never followed nor deleted) and files the layout does not have, with
    whatever holds them.
    """

    layout: str
    delete: tuple[GcEntry, ...]
    problems: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    marked: int = 0
    kept_recent: int = 0
    forced: bool = False
    skipped: tuple[Issue, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.delete)

    @property
    def refused(self) -> bool:
        return bool(self.problems) and not self.forced


@dataclass(frozen=True, slots=True)
class GcResult:
    """What a real run deleted (`plan.delete`); `skipped`: shown entries no longer garbage."""

    plan: GcPlan
    skipped: tuple[GcEntry, ...] = ()
    failed: tuple[tuple[GcEntry, str], ...] = ()


def ordered(entries: Iterable[GcEntry]) -> tuple[GcEntry, ...]:
    """Entries in a safe deletion order (stable within a phase)."""
    return tuple(sorted(entries, key=phase))


def plan_gc(reader: RegistryReader, options: GcOptions, *, exact: bool = False) -> GcPlan:
    """Mark from every root, sweep the rest; reads only, never writes.

    Nothing is followed through a link. A v2 blob's or layer link's folder is looked at
    through its `data` or `link` alone unless `exact`, which lists it: temp files of
    writes to it count in its size, and a folder holding anything else is left alone. One
    more system call per swept object, so only the real run, which deletes those folders
    anyway, pays it.
    """
    now = options.now if options.now is not None else time.time()
    if reader.layout == "v1":
        from regtool.ops.gc_v1 import plan_v1

        return plan_v1(reader, options, now)  # type: ignore[arg-type]
    from regtool.ops.gc_v2 import plan_v2

    return plan_v2(reader, options, now, exact)  # type: ignore[arg-type]


def lock_error(exc: LockTimeout, *, can_wait: bool = False) -> LockHeldError:
    """The refusal naming what holds the lock: writers (serve committing a push, an
    import) share it; gc, rm and restore hold it alone and say so in the lock file."""
    waiting = " or pass --wait 10m to wait for it" if can_wait else ""
    if exc.holder == LOCK_SHARED:
        return LockHeldError(
            f"the storage lock {exc.path} is held shared by a writer (a running regtool "
            "serve committing a push, or an import)",
            hint=f"run again in a moment{waiting}",
        )
    holder = exc.holder or "another regtool gc, rm or restore"
    return LockHeldError(
        f"{holder} holds the storage lock {exc.path}",
        hint=f"wait for it to finish, then run again{waiting}",
    )


def writable_driver(store: Store) -> StorageDriver:
    """The driver gc and rm delete through; refuses a store opened read-only."""
    if not store.writable:
        raise ValueError("deleting needs a store opened with open_storage(writable=True)")
    return store.driver


def collect_garbage(
    store: Store, options: GcOptions, shown: GcPlan | None = None, *, wait: float = 0.0
) -> GcResult:
    """Under the exclusive lock: plan again and delete what is garbage in both plans.

    `store` is opened writable; the lock is waited for up to `wait` seconds. Without
    `shown` (no one saw a plan, e.g. `--yes`), the plan made under the lock is deleted as
    is. A refused plan deletes nothing and is returned as it is.
    """
    driver = writable_driver(store)
    try:
        with store.lock(exclusive=True, timeout=wait, holder="regtool gc"):
            plan = plan_gc(store.reread(), options, exact=True)
            if plan.refused:
                return GcResult(_without_deletions(plan))
            entries, skipped = intersect(plan.delete, shown.delete if shown else None)
            deleted, late, failed = delete_planned(store, driver, options, entries)
            return GcResult(_without_deletions(plan, deleted), skipped + late, failed)
    except LockTimeout as exc:
        raise lock_error(exc, can_wait=True) from None


def delete_planned(
    store: Store, driver: StorageDriver, options: GcOptions, entries: tuple[GcEntry, ...]
) -> tuple[tuple[GcEntry, ...], tuple[GcEntry, ...], tuple[tuple[GcEntry, str], ...]]:
    """Delete `entries` (ordered) under the caller's exclusive lock, blobs last and only
    those a plan made just before the blob phase (gc with `options`) still names.

    Returns (deleted, blobs something now needs, failures).
    """
    blobs = tuple(e for e in entries if phase(e) == LAST_PHASE)
    deleted, failed = delete_entries(driver, entries[: len(entries) - len(blobs)])
    late: tuple[GcEntry, ...] = ()
    if blobs and not failed:
        blobs, late = _still_garbage(store, options, blobs)
    elif failed:
        failed += tuple((e, "not attempted: an earlier deletion failed") for e in blobs)
        blobs = ()
    gone, failed_blobs = delete_entries(driver, blobs)
    return deleted + gone, late, failed + failed_blobs


def _still_garbage(
    store: Store, options: GcOptions, blobs: tuple[GcEntry, ...]
) -> tuple[tuple[GcEntry, ...], tuple[GcEntry, ...]]:
    """(blobs still garbage, blobs something now needs), by a plan made just before the blob
    phase: a tag or manifest written since the first plan (the reference registry takes no
    lock, and an object store has none) keeps what it references."""
    recheck = plan_gc(store.reread(), options, exact=True)
    if recheck.refused:
        return (), blobs
    return intersect(recheck.delete, blobs)


def _without_deletions(plan: GcPlan, delete: tuple[GcEntry, ...] = ()) -> GcPlan:
    return GcPlan(
        plan.layout,
        delete,
        plan.problems,
        plan.warnings,
        plan.marked,
        plan.kept_recent,
        plan.forced,
        plan.skipped,
    )


def intersect(
    fresh: tuple[GcEntry, ...], shown: tuple[GcEntry, ...] | None
) -> tuple[tuple[GcEntry, ...], tuple[GcEntry, ...]]:
    """(entries to delete, shown entries that are no longer garbage)."""
    if shown is None:
        return ordered(fresh), ()
    fresh_keys = {(e.kind, e.path) for e in fresh}
    shown_keys = {(e.kind, e.path) for e in shown}
    keep = [e for e in fresh if (e.kind, e.path) in shown_keys]
    skipped = tuple(e for e in shown if (e.kind, e.path) not in fresh_keys)
    return ordered(keep), skipped


def delete_entries(
    driver: StorageDriver, entries: tuple[GcEntry, ...]
) -> tuple[tuple[GcEntry, ...], tuple[tuple[GcEntry, str], ...]]:
    """Delete in order; a failure stops before the next phase so order guarantees hold."""
    deleted: list[GcEntry] = []
    failed: list[tuple[GcEntry, str]] = []
    phase_failed: int | None = None
    for entry in entries:
        step = phase(entry)
        if phase_failed is not None and step > phase_failed:
            failed.append((entry, "not attempted: an earlier deletion failed"))
            continue
        try:
            remove(driver, entry)
        except (StorageError, OSError) as exc:
            failed.append((entry, str(exc)))
            phase_failed = step if phase_failed is None else phase_failed
            continue
        deleted.append(entry)
    return tuple(deleted), tuple(failed)


def remove(driver: StorageDriver, entry: GcEntry) -> None:
    if entry.kind == "multipart":  # an object store's unfinished write: `id` is its upload id
        driver.abort_multipart(entry.path, entry.id)  # type: ignore[attr-defined]
        return
    if entry.kind == "repository":
        from regtool.ops.gc_v2 import remove_repository

        remove_repository(driver, entry.path)
        return
    driver.delete(entry.path)
    if entry.kind == "temp":  # the folder it was left in goes too when nothing else is there
        tidy = getattr(driver, "remove_empty_parents", None)
        folder = entry.path.rpartition("/")[0]
        if tidy is not None and "/" in folder:
            tidy(folder, folder.rpartition("/")[0])


# -- links and special files met in the tree -------------------------------------------------
def judge_foreign(
    driver: StorageDriver,
    found: dict[str, str],
    may_hold_tags: Callable[[str], bool],
    scanned: str,
) -> tuple[list[Issue], list[Issue]]:
    """(problems, skipped) for the links and special files gc met (key -> what it is).

    gc never follows a link nor deletes one. Where a link may stand for repositories, tags
    or revisions, the registry (which follows links) may serve images through it whose
    blobs gc cannot see: that is a problem (the plan is refused), unless the link points
    back into `scanned`, the part of the tree gc reads itself (a loop, an alias). A special
    file in place of a link file is an unreadable link, a problem as well. Anything else
    is left alone and said so.
    """
    problems: list[Issue] = []
    skipped: list[Issue] = []
    for key, what in sorted(found.items()):
        is_link = what.startswith("a symbolic link")
        if not may_hold_tags(key) or (not is_link and not key.endswith("/link")):
            skipped.append(Issue(key, f"{what}: left alone (regtool never follows links)"))
        elif is_link and _points_back(driver, key, scanned):
            skipped.append(Issue(key, f"{what}, back into the tree gc reads: left alone"))
        else:
            problems.append(
                Issue(
                    key,
                    f"{what} where tags or manifests live: the registry may serve images "
                    "through it that gc cannot see (regtool never follows links)",
                )
            )
    return problems, skipped


def _points_back(driver: StorageDriver, key: str, scanned: str) -> bool:
    """Whether a link names `scanned`, a folder above it, or a real object below it."""
    beneath = getattr(driver, "beneath", None)
    if beneath is None:
        return False
    target = beneath.link_target(key)
    relative = beneath.relative(target) if target is not None else None
    if relative is None:
        return False
    if relative == "" or scanned == relative or scanned.startswith(relative + "/"):
        return True  # a loop: everything below it is read anyway
    if not relative.startswith(scanned + "/"):
        return False
    try:
        mode = beneath.lstat(relative).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return True  # names nothing
    except OSError:
        return False  # through another link
    return not stat.S_ISLNK(mode)
