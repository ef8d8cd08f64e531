"""What this server did lately that its background gc must not undo.

A gc run plans from a mark it made a while ago; meanwhile this server keeps answering.
`Activity` remembers, for the length of the grace window, every digest a request made
live or relied on (a blob committed, mounted or found by HEAD/GET, a manifest put and
everything it references) and every repository written to, plus the upload sessions it
opened and those with a request in flight. `guard(since)` answers, at delete time and
under the exclusive lock, whether a planned entry touches any of that: such an entry is
spared (the next run looks at it again).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from regtool.ops.gc import GcEntry

_HEX = re.compile(r"[0-9a-f]{64,128}")


def hex_of(digest: str) -> str:
    return digest.rpartition(":")[2]


class Activity:
    """Thread-safe record of this server's recent writes and reads (see the module)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._digests: dict[str, float] = {}  # hex -> last time touched
        self._repos: dict[str, float] = {}  # repository -> last write
        self._sessions: dict[str, float] = {}  # upload id -> opened (not finished here)
        self._busy: Counter[str] = Counter()  # upload id -> requests in flight

    # -- recording ------------------------------------------------------------------------
    def touch(self, repo: str | None, digests: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for digest in digests:
                self._digests[hex_of(digest)] = now
            if repo is not None:
                self._repos[repo] = now

    def session_opened(self, repo: str, upload_id: str) -> None:
        now = self.clock()
        with self._lock:
            self._sessions[upload_id] = now
            self._repos[repo] = now

    def session_closed(self, upload_id: str) -> None:
        with self._lock:
            self._sessions.pop(upload_id, None)

    @contextmanager
    def session_busy(self, upload_id: str) -> Iterator[None]:
        with self._lock:
            self._busy[upload_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[upload_id] -= 1
                if self._busy[upload_id] <= 0:
                    del self._busy[upload_id]

    # -- reading --------------------------------------------------------------------------
    @property
    def open_sessions(self) -> int:
        """Upload sessions this server opened that are neither finished, cancelled nor
        removed (the uploads-in-progress gauge)."""
        return len(self._sessions)

    def busy(self, upload_id: str) -> bool:
        with self._lock:
            return upload_id in self._busy

    def forget_before(self, cutoff: float) -> None:
        """Drop what was last touched before `cutoff` (called as each gc run starts)."""
        with self._lock:
            self._digests = {k: v for k, v in self._digests.items() if v >= cutoff}
            self._repos = {k: v for k, v in self._repos.items() if v >= cutoff}

    def guard(self, since: float) -> Guard:
        return Guard(self, since)

    def protects(self, entry: GcEntry, since: float) -> bool:
        with self._lock:
            if entry.kind == "upload":
                opened = self._sessions.get(entry.id)
                return entry.id in self._busy or (opened is not None and opened >= since)
            if entry.kind == "repository" and self._repos.get(entry.id, -1.0) >= since:
                return True
            return any(self._digests.get(h, -1.0) >= since for h in _HEX.findall(entry.path))


@dataclass(frozen=True, slots=True)
class Guard:
    """The question a live gc asks before each deletion: did this server touch it since
    `since` (the mark's start less the grace window)?"""

    activity: Activity
    since: float

    def protects(self, entry: GcEntry) -> bool:
        return self.activity.protects(entry, self.since)
