"""The storage lock: `.regtool.lock` at the storage root, taken with flock(2).

gc and rm hold it exclusively while they delete; serve takes it shared around each
write, so writes wait while a sweep runs and a sweep never starts under a write.

flock cannot say who holds a lock, so a refused taker finds out itself: when a shared
lock can still be had, only shared holders (writers) are in; otherwise an exclusive
holder is, and it wrote what it is ("regtool gc, pid 42") into the lock file right
after taking it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from regtool.storage.driver import SHARED, LockTimeout

__all__ = ["LOCK_NAME", "SHARED", "LockTimeout", "storage_lock"]

LOCK_NAME = ".regtool.lock"
POLL = 0.05
MAX_HOLDER_BYTES = 200


@contextmanager
def storage_lock(
    root: Path, *, exclusive: bool, timeout: float = 0.0, holder: str | None = None
) -> Iterator[Path]:
    """Hold the lock of the storage at `root`; raise LockTimeout after `timeout` seconds.

    An exclusive holder records `holder` (default "regtool") and its pid in the file.
    """
    path = Path(root) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(path, _holder(fd, exclusive)) from None
                time.sleep(POLL)
        try:
            if exclusive:
                _record(fd, f"{holder or 'regtool'}, pid {os.getpid()}")
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _record(fd: int, text: str) -> None:
    """Write what holds the lock into the lock file (best effort: a read-only file or a
    full disk must not stop the holder)."""
    data = (text + "\n").encode()[:MAX_HOLDER_BYTES]
    with suppress(OSError):
        if os.pread(fd, MAX_HOLDER_BYTES + 1, 0) == data:
            return  # the same holder again: the file is left as it is (no new mtime)
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _holder(fd: int, wanted_exclusive: bool) -> str | None:
    """What holds the lock this process was refused: SHARED, or the exclusive holder's
    record (None when it wrote none)."""
    if wanted_exclusive:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return SHARED
    try:
        text = os.pread(fd, MAX_HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text.splitlines()[0] if text else None
