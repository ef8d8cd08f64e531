"""Filesystem driver: keys are paths below a root folder; writes go through temp file + rename."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from regtool.storage import meter, nofollow
from regtool.storage.driver import (
    Entry,
    FileInfo,
    ForeignObjectError,
    InvalidPath,
    ObjectBusy,
    PathNotFound,
    StorageError,
    TooLarge,
    storage_error,
)
from regtool.storage.nofollow import (
    DIR_FLAGS,
    PATH_FLAGS,
    READ_FLAGS,
    Beneath,
    ForeignObject,
    describe,
)

CHUNK = 1 << 20
# (st_dev, st_ino) of the files held by `hold` in this process: flock(2) alone does not
# exclude threads where the kernel emulates it with POSIX locks (NFS)
_HELD: set[tuple[int, int]] = set()
_HELD_LOCK = threading.Lock()

if TYPE_CHECKING:
    from regtool.storage.scan import Scan


class FilesystemDriver:
    """Bytes under `root`. With `readonly=True` every write raises (ls/layers/verify use that)."""

    def __init__(
        self, root: Path | str, *, readonly: bool = False, fsync: bool = True, forks: bool = True
    ) -> None:
        # a forked child may go on reading through it; False where forking is unsafe (a
        # thread of a running server: locks other threads hold would stay held in the child)
        self.forks = forks
        self.root = Path(root)
        self._prefix = str(self.root) + os.sep
        self.readonly = readonly
        self.fsync = fsync
        self.beneath = Beneath(str(self.root))

    def scanner(self) -> Scan:
        from regtool.storage.fs_scan import LocalScan

        return LocalScan(self)

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

    # -- reads ---------------------------------------------------------------------------
    # Nothing below the root is reached through a link: `beneath` opens every key with
    # no-follow semantics on each component, and only regular files are ever read.
    def _open(self, path: str, flags: int) -> int:
        self.full(path)  # validates the key
        try:
            return self.beneath.open(path, flags)
        except OSError as exc:
            raise self.translate(path, exc) from None

    def translate(self, path: str, exc: OSError) -> StorageError:
        """The StorageError for an OSError met at `path` (links on the way named)."""
        if isinstance(exc, ForeignObject):
            return ForeignObjectError(path, exc.foreign.key, exc.foreign.what)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_DIRECTORY on a link: ENOTDIR
            found = self.beneath.foreign_on_the_way(path)
            if found is not None:
                return ForeignObjectError(path, found.key, found.what)
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return PathNotFound(path)
        return StorageError(path, exc.strerror or str(exc))

    def _regular(self, path: str, fd: int) -> os.stat_result:
        """fstat of an opened key; raises (after closing fd) unless it is a regular file."""
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return st
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(path, "is a directory")
        raise ForeignObjectError(path, path, describe(st.st_mode))

    def get(self, path: str, limit: int | None = None) -> bytes:
        # The hot path of ls and verify: one no-follow open, one fstat (only a regular file
        # is read: never a FIFO, a device or a folder), one read for a small file.
        if not path:
            fd = self._open(path, READ_FLAGS)
        else:
            self.full(path)  # validates the key
            try:
                fd = nofollow.open_beneath(self.beneath.root_fd(), path, READ_FLAGS)
            except OSError as exc:
                raise self.translate(path, exc) from None
        meter.files(1)
        try:
            return read_regular(fd, path, limit)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        fd = self._open(path, READ_FLAGS)
        self._regular(path, fd)
        handle = os.fdopen(fd, "rb")
        if offset:
            handle.seek(offset)
        return handle

    def stat(self, path: str) -> FileInfo:
        fd = self._open(path, PATH_FLAGS)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        is_dir = stat.S_ISDIR(st.st_mode)
        if not (is_dir or stat.S_ISREG(st.st_mode)):
            what = self.beneath.link_words(path) if stat.S_ISLNK(st.st_mode) else None
            raise ForeignObjectError(path, path, what or describe(st.st_mode))
        return FileInfo(path, st.st_size, st.st_mtime, is_dir)

    def exists(self, path: str) -> bool:
        """A regular file or folder at `path`, reached without links (a link is not one)."""
        try:
            self.stat(path)
        except StorageError:
            return False
        return True

    def list(self, prefix: str) -> list[Entry]:
        try:
            fd = self._open(prefix, DIR_FLAGS)
        except PathNotFound:
            return []
        try:
            with os.scandir(fd) as it:
                entries = [_entry(e, fd) for e in it]
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        entries.sort(key=lambda e: e.name)
        meter.files(len(entries))
        return entries

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        stack = [prefix]
        while stack:
            folder = stack.pop()
            try:
                fd = self._open(folder, DIR_FLAGS)
            except PathNotFound:
                continue
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
                files = []
                for entry in entries:
                    key = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(key)
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        files.append(FileInfo(key, st.st_size, st.st_mtime, False))
                    else:
                        what = _entry(entry, fd).foreign or describe(st.st_mode)
                        files.append(FileInfo(key, 0, st.st_mtime, False, what))
            except OSError as exc:
                raise StorageError(folder, exc.strerror or str(exc)) from None
            finally:
                os.close(fd)
            meter.files(len(files))
            yield from reversed(files)

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
        self._writable(path)
        meter.files(1)
        try:
            self.beneath.remove(path)
        except OSError as exc:
            error = self.translate(path, exc)
            if not isinstance(error, PathNotFound):
                raise error from None

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
        """Remove now-empty folders from `path` up to (not including) `stop` (never a link)."""
        if self.readonly:
            return
        current = path
        while current and current != stop and current.startswith(stop):
            self.full(current)
            if not self.beneath.rmdir_empty(current):
                return
            current = current.rpartition("/")[0]


def read_regular(fd: int, path: str, limit: int | None = None, chunk: int = CHUNK) -> bytes:
    """The bytes of an open descriptor that must be a regular file (never a FIFO, a device
    or a folder: ForeignObjectError or StorageError); TooLarge over `limit`. One fstat, and
    one read for a file smaller than `chunk`. The caller closes `fd`."""
    return read_checked(fd, os.fstat(fd), path, limit, chunk)


def read_checked(
    fd: int, st: os.stat_result, path: str, limit: int | None = None, chunk: int = CHUNK
) -> bytes:
    """`read_regular` with the descriptor's fstat already made (`st`)."""
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(path, "is a directory")
        raise ForeignObjectError(path, path, describe(st.st_mode))
    if limit is not None and st.st_size > limit:
        raise TooLarge(path, limit)
    want = chunk if limit is None else min(chunk, limit + 1)
    if st.st_size < want:
        data = os.read(fd, want)
        if len(data) < want:
            return data
        os.lseek(fd, 0, os.SEEK_SET)  # it grew meanwhile: the careful way
    return read_fd(fd, path, limit, chunk)


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


def _entry(entry: os.DirEntry[str], dir_fd: int) -> Entry:
    """An Entry from a DirEntry of a folder opened as `dir_fd`, links not followed."""
    if entry.is_dir(follow_symlinks=False):
        return Entry(entry.name, True)
    if entry.is_file(follow_symlinks=False):
        return Entry(entry.name, False)
    if entry.is_symlink():
        try:
            target = os.readlink(entry.name, dir_fd=dir_fd)
        except OSError:
            return Entry(entry.name, False, "a symbolic link")
        return Entry(entry.name, False, f"a symbolic link to {target[:200]!r}")
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return Entry(entry.name, False, "a special file")
    return Entry(entry.name, False, describe(mode))


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
