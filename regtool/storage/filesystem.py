"""Filesystem driver: keys are paths below a root folder; writes go through temp file + rename."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from regtool.storage.driver import (
    Entry,
    FileInfo,
    InvalidPath,
    ObjectBusy,
    PathNotFound,
    StorageError,
    TooLarge,
    storage_error,
)

CHUNK = 1 << 20
# (st_dev, st_ino) of the files held by `hold` in this process: flock(2) alone does not
# exclude threads where the kernel emulates it with POSIX locks (NFS)
_HELD: set[tuple[int, int]] = set()
_HELD_LOCK = threading.Lock()


class FilesystemDriver:
    """Bytes under `root`. With `readonly=True` every write raises (ls/layers/verify use that)."""

    def __init__(self, root: Path | str, *, readonly: bool = False, fsync: bool = True) -> None:
        self.root = Path(root)
        self._prefix = str(self.root) + os.sep
        self.readonly = readonly
        self.fsync = fsync

    # -- paths -------------------------------------------------------------------------
    def full(self, path: str) -> str:
        """The filesystem path of a key; refuses keys that could leave the root."""
        if not path:
            return str(self.root)
        if path[0] == "/" or path[-1] == "/" or "//" in path or "\\" in path or "\0" in path:
            raise InvalidPath(path, "keys are relative and slash-separated, without empty parts")
        if "." in path and ("/." in path or path[0] == "."):
            for part in path.split("/"):
                if part in (".", ".."):
                    raise InvalidPath(path, "'.' or '..' component")
        return self._prefix + path

    # -- reads -------------------------------------------------------------------------
    def get(self, path: str, limit: int | None = None) -> bytes:
        full = self.full(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except FileNotFoundError:
            raise PathNotFound(path) from None
        except NotADirectoryError:
            raise PathNotFound(path) from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        try:
            return read_fd(fd, path, limit)
        except IsADirectoryError:
            raise StorageError(path, "is a directory") from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            handle = open(self.full(path), "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        if offset:
            handle.seek(offset)
        return handle

    def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self.full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        return FileInfo(path, st.st_size, st.st_mtime, (st.st_mode & 0o170000) == 0o040000)

    def exists(self, path: str) -> bool:
        return os.path.exists(self.full(path))

    def list(self, prefix: str) -> list[Entry]:
        try:
            with os.scandir(self.full(prefix)) as it:
                entries = [Entry(e.name, e.is_dir()) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        entries.sort(key=lambda e: e.name)
        return entries

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        base = self.full(prefix)
        cut = len(self._prefix)
        stack = [base]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StorageError(folder[cut:], exc.strerror or str(exc)) from None
            files = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    files.append(entry)
            for entry in reversed(files):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                yield FileInfo(entry.path[cut:], st.st_size, st.st_mtime, False)

    # -- writes ------------------------------------------------------------------------
    def _writable(self, path: str) -> str:
        if self.readonly:
            raise StorageError(path, "driver is read-only")
        return self.full(path)

    def put(self, path: str, data: bytes) -> None:
        self.put_stream(path, (data,))

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        full = self._writable(path)
        folder = os.path.dirname(full)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{full}.{uuid.uuid4().hex}.tmp"
        written = 0
        try:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    written += len(chunk)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, full)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self.fsync:
            _fsync_dir(folder)
        return written

    def open_append(self, path: str) -> BinaryIO:
        full = self._writable(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        try:
            return open(full, "ab")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise storage_error(path, exc) from None

    @contextmanager
    def hold(self, path: str) -> Iterator[None]:
        """flock(2) on the file (other processes) plus a table of held inodes (threads)."""
        full = self._writable(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        key: tuple[int, int] | None = None
        try:
            st = os.fstat(fd)
            with _HELD_LOCK:
                if (st.st_dev, st.st_ino) in _HELD:
                    raise ObjectBusy(path)
                key = (st.st_dev, st.st_ino)
                _HELD.add(key)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ObjectBusy(path) from None
            except OSError:
                pass  # no flock on this filesystem: threads are still excluded
            # the holder before us may have removed or replaced it: only the file still
            # at `path` counts
            try:
                now = os.stat(full, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFound(path) from None
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise PathNotFound(path)
            yield
        finally:
            os.close(fd)  # releases the flock
            if key is not None:
                with _HELD_LOCK:
                    _HELD.discard(key)

    def delete(self, path: str) -> None:
        full = self._writable(path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None

    def move(self, src: str, dst: str) -> None:
        full_src = self._writable(src)
        full_dst = self._writable(dst)
        os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        try:
            os.replace(full_src, full_dst)
        except FileNotFoundError:
            raise PathNotFound(src) from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                shutil.move(full_src, full_dst)
                return
            raise storage_error(src, exc) from None
        if self.fsync:
            _fsync_dir(os.path.dirname(full_dst))

    def remove_empty_parents(self, path: str, stop: str) -> None:
        """Remove now-empty folders from `path` up to (not including) `stop`."""
        if self.readonly:
            return
        current = path
        while current and current != stop and current.startswith(stop):
            try:
                os.rmdir(self.full(current))
            except OSError:
                return
            current = current.rpartition("/")[0]


def read_fd(fd: int, path: str, limit: int | None = None, chunk: int = CHUNK) -> bytes:
    """The rest of an open file; with `limit`, TooLarge instead of more than `limit` bytes.

    Regular files return short reads only at their end, so a small object costs one read
    and no stat. When the first chunk is full, the size (fstat) is checked before anything
    more is read, and a file still growing is cut off at the first byte past the limit:
    at most one chunk, and never more than limit + 1 bytes, is read of a refused object.
    """
    want = chunk if limit is None else min(chunk, limit + 1)
    data = os.read(fd, want)
    if len(data) < want:
        return data
    if limit is not None and (len(data) > limit or os.fstat(fd).st_size > limit):
        raise TooLarge(path, limit)
    parts = [data]
    total = len(data)
    while True:
        if limit is not None:
            want = min(chunk, limit + 1 - total)
        data = os.read(fd, want)
        if not data:
            return b"".join(parts)
        parts.append(data)
        total += len(data)
        if limit is not None and total > limit:
            raise TooLarge(path, limit)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
