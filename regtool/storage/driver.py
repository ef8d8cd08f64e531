"""The storage driver interface, shaped so an object store can implement it.

Keys are relative, slash-separated paths (`docker/registry/v2/blobs/...`). Drivers offer
whole-object put/get, streamed reads and writes, stat, list-by-prefix, delete and move;
layout code never assumes real directories or an atomic rename of folders.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from regtool.storage.scan import Scan


class StorageError(Exception):
    """Base of driver errors; carries the key it concerns."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class PathNotFound(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(path, "not found")


class InvalidPath(StorageError):
    pass


class StorageFull(StorageError):
    """No room left to write (ENOSPC, EDQUOT)."""


class ObjectBusy(StorageError):
    """Another writer holds the object (see `StorageDriver.hold`)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "held by another writer")


class ObjectExists(StorageError):
    """A create-only write found the object already there (another writer won)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "already exists")


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(path: str, exc: OSError) -> StorageError:
    """The StorageError for an OSError met while writing `path` (StorageFull when full)."""
    message = exc.strerror or str(exc)
    if exc.errno in FULL_ERRNOS:
        return StorageFull(path, message)
    return StorageError(path, message)


class TooLarge(StorageError):
    """An object bigger than the caller's limit; refused without reading it whole."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path, f"larger than {limit} bytes")
        self.limit = limit


class ForeignObjectError(StorageError):
    """A symbolic link or special file where a regular file or folder belongs: never
    followed, opened or removed. `foreign` is the key of that object (`path` or a folder
    on the way to it), `what` says what it is ("a symbolic link to '/x'", "a FIFO")."""

    def __init__(self, path: str, foreign: str, what: str) -> None:
        why = (
            "regtool never follows links inside the storage"
            if "link" in what
            else "regtool reads only regular files and folders"
        )
        where = what if foreign == path else f"{foreign} is {what}"
        super().__init__(path, f"{where}: {why}")
        self.foreign = foreign
        self.what = what


SHARED = "shared"  # LockTimeout.holder when only shared holders (writers) hold the lock


class LockTimeout(Exception):
    """The storage lock was not granted in time; `path` names the lock. `holder` says what
    holds it where that could be told: "shared" (writers such as serve committing a push),
    or what an exclusive holder wrote into the lock file ("regtool gc, pid 42")."""

    def __init__(self, path: Path, holder: str | None = None) -> None:
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.path = path
        self.holder = holder


@dataclass(frozen=True, slots=True)
class FileInfo:
    """`foreign` (walk only): what a link or special file is; it is not a file then.
    `md5` (object stores, listings only): the hex MD5 of the bytes when the store's ETag is
    known to be one (an object written in one PUT, not encrypted with KMS), else None."""

    path: str
    size: int
    mtime: float
    is_dir: bool
    foreign: str | None = None
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One child of a listed prefix; links are never followed to tell what they name.

    `foreign` says what a child that is neither a regular file nor a folder is ("a
    symbolic link to '/x'", "a FIFO"); such a child has is_dir False and must not be read.
    """

    name: str
    is_dir: bool
    foreign: str | None = None


@dataclass(frozen=True, slots=True)
class Multipart:
    """An object store's unfinished multipart upload: `path` is the key it would create
    (relative, like every driver key), `size` the bytes its parts hold."""

    path: str
    upload_id: str
    initiated: float
    size: int


class StorageDriver(Protocol):
    """What layouts need from a place that stores bytes."""

    # True when a forked child process may go on using the driver (no threads, pools or
    # connections behind it): ops fork workers on big local trees only.
    forks: bool

    def get(self, path: str, limit: int | None = None) -> bytes:
        """The whole object; with `limit`, TooLarge when it holds more (at most limit+1 read)."""
        ...

    def put(self, path: str, data: bytes) -> None:
        """Write the whole object atomically (readers see the old or the new bytes)."""
        ...

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Write an object from chunks atomically; returns the bytes written."""
        ...

    def open(self, path: str, offset: int = 0) -> BinaryIO: ...

    def stat(self, path: str) -> FileInfo: ...

    def exists(self, path: str) -> bool: ...

    def list(self, prefix: str) -> list[Entry]:
        """Immediate children of a prefix, sorted by name; [] when there are none."""
        ...

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        """Every object below a prefix (files only), each exactly once, in an order callers
        must not rely on: depth-first by name on a filesystem, key order on an object store.
        Links and special files come with `foreign` set and are not descended into."""
        ...

    def delete(self, path: str) -> None:
        """Remove an object or everything below a prefix; a missing path is not an error.

        Never through or of a link: ForeignObjectError (nothing removed) when one is met.
        """
        ...

    def move(self, src: str, dst: str) -> None: ...

    def open_append(self, path: str) -> BinaryIO:
        """Open an object for appending (created empty, with its folders, when missing).

        Not atomic: meant for scratch objects such as an upload session's `data`, which
        grows chunk by chunk and is moved into place (atomically) once complete.
        """
        ...

    def remove_empty_parents(self, path: str, stop: str) -> None:
        """Remove `path` and its parents while they are empty folders, up to `stop`."""
        ...

    def scanner(self) -> Scan:
        """Bulk reads for a scan of the whole storage (gc): the driver's own fast paths."""
        ...

    def hold(self, path: str) -> AbstractContextManager[None]:
        """Hold an existing object exclusively while the context runs, against every other
        holder (threads and, where the store allows, other processes). Never waits: raises
        ObjectBusy when it is held, PathNotFound when it is missing or removed meanwhile."""
        ...
