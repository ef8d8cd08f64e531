"""The server's background work: gc every `--gc-interval`, upload purging once at
start-up and then every purge interval. Each runs on a thread of its own, one run at a
time; a run that fails is logged and the next one comes at its time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from regtool.errors import RegtoolError
from regtool.layout.store import Store
from regtool.ops.gc import GcOptions
from regtool.ops.gc_live import LiveResult, collect_live
from regtool.ops.purge import PurgeResult, purge_uploads
from regtool.server.accesslog import AccessLog
from regtool.server.activity import Activity
from regtool.server.metrics import Metrics
from regtool.storage.driver import StorageError

DEFAULT_PURGE_AGE = 168 * 3600.0
DEFAULT_PURGE_INTERVAL = 24 * 3600.0
BACKGROUND_NICE = 10  # how much lower than the server maintenance threads run


@dataclass(frozen=True, slots=True)
class GcSchedule:
    interval: float
    options: GcOptions


@dataclass(frozen=True, slots=True)
class PurgeSchedule:
    """distribution's storage.maintenance.uploadpurging."""

    enabled: bool = True
    age: float = DEFAULT_PURGE_AGE
    interval: float = DEFAULT_PURGE_INTERVAL
    dry_run: bool = False


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class Maintenance:
    def __init__(
        self,
        store: Store,
        activity: Activity,
        log: AccessLog,
        metrics: Metrics | None = None,
        *,
        gc: GcSchedule | None = None,
        purge: PurgeSchedule | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.activity = activity
        self.log = log
        self.metrics = metrics
        self.gc = gc
        self.purge = purge if purge is not None and purge.enabled else None
        self.clock = clock
        self._stop = threading.Event()
        self._gc_running = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.gc is not None:
            self._spawn("gc", self.gc.interval, self.run_gc, first=False)
        if self.purge is not None:
            self._spawn("purge", self.purge.interval, self.run_purge, first=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loops to stop, and wait for a run in progress (up to `timeout`)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _spawn(self, name: str, interval: float, run: Callable[[], object], first: bool) -> None:
        def loop() -> None:
            background()
            if first and not self._stop.is_set():
                self._guarded(name, run)
            while not self._stop.wait(interval):
                self._guarded(name, run)

        thread = threading.Thread(target=loop, name=f"regtool-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guarded(self, name: str, run: Callable[[], object]) -> None:
        try:
            run()
        except (RegtoolError, StorageError, OSError) as exc:
            text = getattr(exc, "message", None) or str(exc)
            self.log.event(name, f"failed: {text}", status="failed", error=text)
        except Exception as exc:  # a bug must not end the loop: said, and retried next time
            self.log.event(name, f"failed: {exc!r}", status="failed", error=repr(exc))

    # -- gc --------------------------------------------------------------------------------
    def run_gc(self) -> LiveResult | None:
        """One gc run now (None when one is running already)."""
        assert self.gc is not None
        if not self._gc_running.acquire(blocking=False):
            return None
        try:
            options = self.gc.options
            began = self.clock()
            since = began - options.grace
            self.activity.forget_before(since)
            outcome = collect_live(self.store, options, self.activity.guard(since))
            self._report_gc(outcome)
            return outcome
        finally:
            self._gc_running.release()

    def _report_gc(self, outcome: LiveResult) -> None:
        plan = outcome.result.plan
        deleted = outcome.deleted
        for entry in deleted:
            if entry.kind == "upload":
                self.activity.session_closed(entry.id)
        finished = self.clock()
        if self.metrics is not None:
            self.metrics.gc_run(len(deleted), outcome.freed, finished, outcome.seconds)
        figures = {
            "status": "refused" if plan.refused else "done",
            "deleted": len(deleted),
            "freed_bytes": outcome.freed,
            "blobs": sum(1 for e in deleted if e.kind == "blob"),
            "spared": outcome.spared,
            "failed": len(outcome.result.failed),
            "marked": plan.marked,
            "kept_recent": plan.kept_recent,
            "problems": len(plan.problems),
            "duration_s": round(outcome.seconds, 3),
        }
        if plan.refused:
            first = plan.problems[0]
            text = (
                f"refused, deleted nothing: {len(plan.problems)} live objects cannot be read "
                f"(first: {first}); run `regtool verify`"
            )
        else:
            text = (
                f"deleted {len(deleted)} entries, freed {human(outcome.freed)} "
                f"in {outcome.seconds:.2f}s ({outcome.spared} spared as in use, "
                f"{len(outcome.result.failed)} failed)"
            )
        self.log.event("gc", text, **figures)
        for entry, reason in outcome.result.failed:
            self.log.event(
                "gc",
                f"could not delete {entry.path}: {reason}",
                path=entry.path,
                error=reason,
                status="failed",
            )

    # -- upload purging ----------------------------------------------------------------------
    def run_purge(self) -> PurgeResult:
        assert self.purge is not None
        result = purge_uploads(
            self.store, self.purge.age, dry_run=self.purge.dry_run, busy=self.activity.busy
        )
        if not result.dry_run:
            for session in result.purged:
                self.activity.session_closed(session.upload_id)
            if self.metrics is not None:
                self.metrics.uploads_purged(len(result.purged))
        verb = "would remove" if result.dry_run else "removed"
        text = (
            f"{verb} {len(result.purged)} upload sessions older than "
            f"{self.purge.age / 3600:g}h ({human(result.bytes)}); {len(result.busy)} in use, "
            f"{len(result.failed)} failed"
        )
        self.log.event(
            "purge",
            text,
            purged=len(result.purged),
            bytes=result.bytes,
            busy=len(result.busy),
            failed=len(result.failed),
            dryrun=result.dry_run,
            sessions=[f"{s.repo}/{s.upload_id}" for s in result.purged[:20]],
        )
        return result


def background() -> None:
    """Lower the calling thread's CPU priority (Linux nice values are per thread; worker
    processes it forks inherit it): requests come first, maintenance takes what is left."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: run at the server's priority
