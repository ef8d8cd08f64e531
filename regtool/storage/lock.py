"""The storage lock: `.regtool.lock` at the storage root, taken with flock(2).

gc and rm hold it exclusively while they delete; serve takes it shared around each
write, so writes wait while a sweep runs and a sweep never starts under a write.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from regtool.storage.driver import LockTimeout

__all__ = ["LOCK_NAME", "LockTimeout", "storage_lock"]

LOCK_NAME = ".regtool.lock"


@contextmanager
def storage_lock(root: Path, *, exclusive: bool, timeout: float = 0.0) -> Iterator[Path]:
    """Hold the lock of the storage at `root`; raise LockTimeout after `timeout` seconds."""
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
                    raise LockTimeout(path) from None
                time.sleep(0.05)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
