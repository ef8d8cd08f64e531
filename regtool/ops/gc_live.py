"""gc beside a running server (`serve --gc-interval`): the same mark and sweep as
`regtool gc`, arranged so that writers wait for it only a moment.

`regtool gc` plans under the exclusive storage lock; a server that did so would hold its
own pushes for a whole scan. Here the mark is made without the lock (writers go on), and
only deletions hold it, in slices of at most `SLICE` seconds. What was written meanwhile
is kept by three things: the grace window (anything newer than it is not garbage), the
server's own record of what it touched since the mark (`Guard`, asked for every entry
under the lock, so a manifest put or blob committed by this server before the deletion
keeps what it needs), and a second plan made just before the blob phase, as `regtool gc`
does, for what other instances on the storage wrote. Deletion order is gc's: tags and
manifests first, blobs last, so a pull never finds a manifest whose blobs are gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from regtool.layout.reader import RegistryReader
from regtool.layout.store import LockTimeout, Store
from regtool.layout.v2 import paths
from regtool.ops.gc import (
    LAST_PHASE,
    GcEntry,
    GcOptions,
    GcResult,
    _without_deletions,
    intersect,
    lock_error,
    ordered,
    phase,
    plan_gc,
    remove,
    writable_driver,
)
from regtool.storage.driver import PathNotFound, StorageError

HOLDER = "regtool serve (background gc)"
SLICE = 0.25  # seconds of deleting per hold of the exclusive lock
LOCK_WAIT = 30.0  # how long a run waits for the exclusive lock before it gives up


class Guard(Protocol):
    def protects(self, entry: GcEntry) -> bool:
        """Whether the server touched what `entry` names since the mark began."""
        ...


@dataclass(frozen=True, slots=True)
class LiveResult:
    """A run's outcome: `result` as gc's; `spared` the planned entries the guard or the
    re-check kept; `seconds` the run's length."""

    result: GcResult
    spared: int
    seconds: float

    @property
    def deleted(self) -> tuple[GcEntry, ...]:
        return self.result.plan.delete

    @property
    def freed(self) -> int:
        return self.result.plan.bytes


def collect_live(
    store: Store, options: GcOptions, guard: Guard, *, lock_wait: float = LOCK_WAIT
) -> LiveResult:
    """One gc run beside live writers (see the module). LockHeldError when the exclusive
    lock cannot be had within `lock_wait` (another gc or rm runs): nothing more deleted."""
    started = time.monotonic()
    driver = writable_driver(store)
    plan = plan_gc(_fresh(store), options, exact=True)
    if plan.refused:
        return LiveResult(GcResult(_without_deletions(plan)), 0, time.monotonic() - started)
    entries = ordered(plan.delete)
    blobs = tuple(e for e in entries if phase(e) == LAST_PHASE)
    front = entries[: len(entries) - len(blobs)]
    deleted, failed, spared = _delete_guarded(store, driver, front, guard, lock_wait)
    late: tuple[GcEntry, ...] = ()
    if blobs and failed:
        failed += tuple((e, "not attempted: an earlier deletion failed") for e in blobs)
        blobs = ()
    elif blobs:
        recheck = plan_gc(_fresh(store), options, exact=True)
        blobs, late = ((), blobs) if recheck.refused else intersect(recheck.delete, blobs)
    gone, failed_blobs, spared_blobs = _delete_guarded(store, driver, blobs, guard, lock_wait)
    result = GcResult(
        _without_deletions(plan, deleted + gone),
        late + spared + spared_blobs,
        failed + failed_blobs,
    )
    return LiveResult(result, len(result.skipped), time.monotonic() - started)


def _fresh(store: Store) -> RegistryReader:
    """A reader with nothing cached: on a disk the plain one; on a bucket (which the
    server reads directly, without a snapshot) a new bulk view, one listing per plan."""
    return store.reread() if store.root is not None else store.bulk_reader()


def _written_since(driver: Any, entry: GcEntry) -> bool:
    """Whether a repository planned as emptied holds revisions, tags or uploads now
    (written by another instance meanwhile: on a bucket nothing locks them out; the stale
    uploads planned are deleted in an earlier phase)."""
    if entry.kind != "repository":
        return False
    folders = (paths.revisions_dir(entry.id), paths.tags_dir(entry.id), paths.uploads_dir(entry.id))
    for folder in folders:
        try:
            if driver.list(folder):
                return True
        except PathNotFound:
            continue
    return False


def _delete_guarded(
    store: Store, driver: object, entries: tuple[GcEntry, ...], guard: Guard, lock_wait: float
) -> tuple[tuple[GcEntry, ...], tuple[tuple[GcEntry, str], ...], tuple[GcEntry, ...]]:
    """(deleted, failed, spared): delete in order under the exclusive lock, taken again
    every SLICE seconds so that writers waiting on it go on. A failure stops the phases
    after it, as in gc."""
    deleted: list[GcEntry] = []
    failed: list[tuple[GcEntry, str]] = []
    spared: list[GcEntry] = []
    pending = list(entries)
    stop_after: int | None = None
    position = 0
    try:
        while position < len(pending):
            with store.lock(exclusive=True, timeout=lock_wait, holder=HOLDER):
                until = time.monotonic() + SLICE
                while position < len(pending) and time.monotonic() < until:
                    entry = pending[position]
                    position += 1
                    if stop_after is not None and phase(entry) > stop_after:
                        failed.append((entry, "not attempted: an earlier deletion failed"))
                    elif guard.protects(entry) or _written_since(driver, entry):
                        spared.append(entry)
                    else:
                        try:
                            remove(driver, entry)  # type: ignore[arg-type]
                        except (StorageError, OSError) as exc:
                            failed.append((entry, str(exc)))
                            stop_after = phase(entry) if stop_after is None else stop_after
                        else:
                            deleted.append(entry)
    except LockTimeout as exc:
        raise lock_error(exc) from None
    return tuple(deleted), tuple(failed), tuple(spared)
