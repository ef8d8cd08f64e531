"""The storage summary the web page (and /metrics) show, computed in the background.

`Summaries` owns one worker thread. It computes a `Summary` at start-up and again after
the storage changed (the write handlers call `changed()` once a manifest PUT or DELETE or
a blob DELETE has committed), at most once every `debounce` seconds. Requests only read
`current()`, the latest finished one: nothing is computed per request, and nothing the
worker does holds a lock a push needs (it reads the storage as `regtool ls` and
`regtool gc --dry-run` do, without the storage lock).

The figures come from the same ops the CLI uses: one inventory gives `ls`'s tag rows and
`ls --repos`'s repository rows and totals; `plan_gc` (default options, then with
`delete_untagged`) gives what gc would free.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from regtool.errors import RegtoolError
from regtool.layout.store import Store
from regtool.ops.gc import GcOptions, GcPlan, plan_gc
from regtool.ops.inventory import Inventory, take_inventory
from regtool.ops.ls import RepositoryRow, TagRow, repository_rows_with_totals, tag_rows_with_totals
from regtool.storage.driver import StorageError

DEBOUNCE = 3.0  # seconds between the starts of two computations, at least
DUTY = 0.2  # and no more than this share of the time computing: a computation of S seconds
# (12 s on a 2,000-repository tree) waits S / DUTY from its start before the next one


@dataclass(frozen=True)
class Summary:
    """One look at the whole storage. Byte counts are exact; blobs are counted once.

    repositories, tags: as `ls --repos` and `ls` list them (empty repositories too).
    blobs, tagged_bytes: the distinct blobs the tags need and their bytes (`ls` totals).
    exclusive_bytes, shared_bytes: of tagged_bytes, what one repository alone needs and
        the rest (`ls --repos` totals).
    saved_bytes: what sharing saves: the sum of the repositories' sizes minus tagged_bytes
        (each repository storing its own copy would take that much more).
    gc_bytes, gc_entries, gc_blobs: what `regtool gc` with default options (1h grace)
        would free now: bytes, entries, and blobs among them.
    untagged_manifests, untagged_bytes: manifests no tag reaches, which
        `gc --delete-untagged` would drop, and the bytes that run would free in all.
    stored_bytes: tagged_bytes + untagged_bytes: every blob the tags need plus everything
        `gc --delete-untagged` would free (not counted: objects within the grace window,
        referrers and index children no tag reaches).
    gc_problems: live objects gc cannot read (gc would refuse to run).
    complete: False while only the `ls` figures are known (the first computation publishes
        them before planning gc); the gc figures are then None.
    started, computed_at: wall-clock start and end (Unix seconds); seconds: how long it took.
    error: why the last computation failed (the figures are then the previous ones), else None.
    """

    layout: str
    repositories: int
    tags: int
    blobs: int
    tagged_bytes: int
    exclusive_bytes: int
    shared_bytes: int
    saved_bytes: int
    gc_bytes: int | None
    gc_entries: int | None
    gc_blobs: int | None
    gc_problems: int | None
    untagged_manifests: int | None
    untagged_bytes: int | None
    stored_bytes: int | None
    complete: bool
    started: float
    computed_at: float
    seconds: float
    error: str | None = None
    tag_rows: tuple[TagRow, ...] = field(default=(), repr=False)
    repository_rows: tuple[RepositoryRow, ...] = field(default=(), repr=False)
    inventory: Inventory | None = field(default=None, repr=False, compare=False)


EMPTY = Summary("v2", 0, 0, 0, 0, 0, 0, 0, None, None, None, None, None, None, None, False, 0, 0, 0)


def listing_summary(store: Store, started: float) -> Summary:
    """The `ls` half: tags, repositories and their totals, from one inventory."""
    inventory = take_inventory(store.reread(forks=False))
    tag_rows, tag_totals = tag_rows_with_totals(inventory)
    repo_rows, repo_totals = repository_rows_with_totals(inventory)
    now = time.time()
    return Summary(
        layout=inventory.layout,
        repositories=len(repo_rows),
        tags=len(tag_rows),
        blobs=tag_totals.blobs,
        tagged_bytes=tag_totals.size,
        exclusive_bytes=repo_totals.exclusive,
        shared_bytes=repo_totals.shared,
        saved_bytes=sum(row.size for row in repo_rows) - repo_totals.size,
        gc_bytes=None,
        gc_entries=None,
        gc_blobs=None,
        gc_problems=None,
        untagged_manifests=None,
        untagged_bytes=None,
        stored_bytes=None,
        complete=False,
        started=started,
        computed_at=now,
        seconds=now - started,
        tag_rows=tag_rows,
        repository_rows=repo_rows,
        inventory=inventory,
    )


def with_gc(listing: Summary, plain: GcPlan, untagged: GcPlan) -> Summary:
    now = time.time()
    return replace(
        listing,
        gc_bytes=plain.bytes,
        gc_entries=len(plain.delete),
        gc_blobs=sum(1 for entry in plain.delete if entry.kind in ("blob", "image")),
        gc_problems=len(plain.problems),
        untagged_manifests=sum(1 for entry in untagged.delete if entry.kind == "manifest"),
        untagged_bytes=untagged.bytes,
        stored_bytes=listing.tagged_bytes + untagged.bytes,
        complete=True,
        computed_at=now,
        seconds=now - listing.started,
    )


def compute_summary(store: Store, partial: Callable[[Summary], None] | None = None) -> Summary:
    """The whole summary; `partial` gets the `ls` half first, as soon as it is known."""
    started = time.time()
    listing = listing_summary(store, started)
    if partial is not None:
        partial(listing)
    plain = plan_gc(store.reread(forks=False), GcOptions())
    untagged = plan_gc(store.reread(forks=False), GcOptions(delete_untagged=True))
    return with_gc(listing, plain, untagged)


Compute = Callable[[Store, Callable[[Summary], None] | None], Summary]


class Summaries:
    """The worker thread that keeps `current()` up to date (see the module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        debounce: float = DEBOUNCE,
        compute: Compute = compute_summary,
        on_publish: Callable[[Summary], None] | None = None,
    ) -> None:
        self.store = store
        self._on_publish = on_publish  # told of every summary published (the metrics)
        self.debounce = debounce
        self._compute = compute
        self._current: Summary | None = None
        self._cond = threading.Condition()
        self._dirty = True  # the first computation runs at start
        self._stopping = False
        self._last_start = float("-inf")
        self._last_seconds = 0.0  # how long the last computation took
        self.computations = 0  # finished computations (tests wait on it)
        self._thread: threading.Thread | None = None

    def start(self) -> Summaries:
        self._thread = threading.Thread(target=self._run, name="summary", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def changed(self) -> None:
        """The storage changed: compute again (soon, not now). Never blocks on the worker."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def current(self) -> Summary | None:
        """The latest summary, None before the first is known."""
        return self._current

    def wait(self, computations: int, timeout: float) -> Summary | None:
        """Wait until at least `computations` have finished (or `timeout`); the latest."""
        with self._cond:
            self._cond.wait_for(lambda: self.computations >= computations, timeout)
            return self._current

    def _run(self) -> None:
        from regtool.server.maintenance import background

        background()  # requests come first
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping)
                # debounce: changes arriving within the pause are covered by one run
                gap = max(self.debounce, self._last_seconds / DUTY)
                pause = self._last_start + gap - time.monotonic()
                while pause > 0 and not self._stopping:
                    self._cond.wait(pause)
                    pause = self._last_start + gap - time.monotonic()
                if self._stopping:
                    return
                self._dirty = False
                self._last_start = time.monotonic()
            summary = self._one()
            self._last_seconds = time.monotonic() - self._last_start
            self._publish(summary)

    def _one(self) -> Summary:
        first = self._current is None

        def partial(listing: Summary) -> None:
            if first:  # later runs keep showing the complete previous summary until done
                self._current = listing

        try:
            return self._compute(self.store, partial)
        except (RegtoolError, StorageError, OSError) as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug must not stop the worker: reported, retried later
            traceback.print_exc(file=sys.stderr)
            return self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, message: str) -> Summary:
        now = time.time()
        sys.stderr.write(f"summary: {message}\n")
        return replace(self._current or EMPTY, error=message, computed_at=now)

    def _publish(self, summary: Summary) -> None:
        with self._cond:
            self._current = summary
            self.computations += 1
            self._cond.notify_all()
        if self._on_publish is not None:
            self._on_publish(summary)
