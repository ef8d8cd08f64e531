"""Garbage collection on both layouts: plan what is unreachable, then delete exactly that.

The plan is computed without writing anything (`plan_gc`). `collect_garbage` takes the
exclusive storage lock, plans again under it and deletes the entries present in both the
plan the user saw and the fresh one, so nothing that became live in between is touched.
Deletion order never leaves a tag naming a missing object: tag index links and revision
links go first, then layer links, uploads and repositories, and blobs or images last.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from regtool.errors import LockHeldError
from regtool.layout.reader import Issue, RegistryReader
from regtool.storage.driver import StorageDriver, StorageError
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.lock import LockTimeout, storage_lock

DEFAULT_GRACE = 3600.0  # 1h: pushes in flight (blobs before their manifest) survive
DEFAULT_UPLOAD_AGE = 86400.0  # 24h, the same default as verify's stale-upload check

# Deletion phases: references to an object go before the object itself.
PHASES = {"tag": 0, "link": 0, "file": 0, "manifest": 1, "upload": 2, "repository": 3}
LAST_PHASE = 4  # blob, image


@dataclass(frozen=True, slots=True)
class GcEntry:
    """One thing to delete: `path` relative to the storage root, `size` in bytes removed."""

    kind: str  # blob | manifest | link | upload | repository | image (rm: tag | file)
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
    broken v1 chain): with any of them the plan is refused unless `forced`.
    """

    layout: str
    delete: tuple[GcEntry, ...]
    problems: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    marked: int = 0
    kept_recent: int = 0
    forced: bool = False

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
    return tuple(sorted(entries, key=lambda e: PHASES.get(e.kind, LAST_PHASE)))


def plan_gc(reader: RegistryReader, options: GcOptions, *, exact: bool = False) -> GcPlan:
    """Mark from every root, sweep the rest; reads only, never writes.

    A v2 blob's size is its `data` file's unless `exact`, which also lists the folder for
    leftover temp files (deleted with it): one more system call per swept blob, so only
    the real run, which deletes those folders anyway, pays it.
    """
    now = options.now if options.now is not None else time.time()
    if reader.layout == "v1":
        from regtool.ops.gc_v1 import plan_v1

        return plan_v1(reader, options, now)  # type: ignore[arg-type]
    from regtool.ops.gc_v2 import plan_v2

    return plan_v2(reader, options, now, exact)  # type: ignore[arg-type]


def fresh_reader(reader: RegistryReader) -> RegistryReader:
    """A reader over the same storage without caches (what it read may have changed)."""
    return type(reader)(reader.driver, reader.root)  # type: ignore[call-arg]


def writable_driver(reader: RegistryReader) -> StorageDriver:
    return FilesystemDriver(reader.root, fsync=False)


def lock_error(exc: LockTimeout) -> LockHeldError:
    return LockHeldError(
        f"another regtool gc or rm holds the storage lock {exc.path}",
        hint="wait for it to finish, then run again",
    )


def collect_garbage(
    reader: RegistryReader, options: GcOptions, shown: GcPlan | None = None
) -> GcResult:
    """Under the exclusive lock: plan again and delete what is garbage in both plans.

    Without `shown` (no one saw a plan, e.g. `--yes`), the plan made under the lock is
    deleted as is. A refused plan deletes nothing and is returned as it is.
    """
    try:
        with storage_lock(reader.root, exclusive=True, timeout=0):
            plan = plan_gc(fresh_reader(reader), options, exact=True)
            if plan.refused:
                return GcResult(_without_deletions(plan))
            entries, skipped = intersect(plan.delete, shown.delete if shown else None)
            deleted, failed = delete_entries(writable_driver(reader), entries)
            return GcResult(_without_deletions(plan, deleted), skipped, failed)
    except LockTimeout as exc:
        raise lock_error(exc) from None


def _without_deletions(plan: GcPlan, delete: tuple[GcEntry, ...] = ()) -> GcPlan:
    return GcPlan(
        plan.layout,
        delete,
        plan.problems,
        plan.warnings,
        plan.marked,
        plan.kept_recent,
        plan.forced,
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
        phase = PHASES.get(entry.kind, LAST_PHASE)
        if phase_failed is not None and phase > phase_failed:
            failed.append((entry, "not attempted: an earlier deletion failed"))
            continue
        try:
            remove(driver, entry)
        except (StorageError, OSError) as exc:
            failed.append((entry, str(exc)))
            phase_failed = phase if phase_failed is None else phase_failed
            continue
        deleted.append(entry)
    return tuple(deleted), tuple(failed)


def remove(driver: StorageDriver, entry: GcEntry) -> None:
    if entry.kind == "repository":
        from regtool.ops.gc_v2 import remove_repository

        remove_repository(driver, entry.path)
    else:
        driver.delete(entry.path)
