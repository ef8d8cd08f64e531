"""Blob upload sessions (`_uploads/<uuid>/`), one interface over two ways to keep them.

`UploadSessions` is what the server's upload handlers call; the Store builds the one that
fits its storage:

- `FilesystemUploads`: registry 2.8.2's own session (`startedat` and a `data` file that
  grows by appends). A session serves one request at a time (flock on `startedat`, so
  servers sharing the folder exclude each other too); the last chunk is fdatasync'ed
  before `data` is renamed into `blobs/`.
- `ObjectStoreUploads` (uploads_s3.py): the state lives in the bucket, so any instance
  continues any session; each PATCH body is an object of its own.

Either keeps a running sha256 per session in memory (hashed as the bytes arrive): a
session continued elsewhere, or after a restart, is re-hashed from the storage on PUT.
No `hashstates` are written (2.8.2 re-reads the data when they are missing).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, BinaryIO, Protocol

from regtool.layout.v2 import paths
from regtool.layout.v2.writer import DigestMismatch, V2Writer
from regtool.model.digest import split_digest
from regtool.storage.driver import StorageDriver, StorageError, storage_error

WRITEBACK_STEP = 8 << 20
HASH_QUEUE = 8  # chunks (of up to 1 MiB) waiting for the hashing thread
READ_CHUNK = 1 << 20


class UploadSessions(Protocol):
    """Upload sessions of one storage. Sessions are named by a UUID; a missing one raises
    PathNotFound, one used by another request ObjectBusy (the server's 409)."""

    def start(self, repo: str) -> str:
        """A new, empty session; returns its id."""
        ...

    def size(self, repo: str, upload_id: str) -> int:
        """The bytes the session holds (PathNotFound when there is no such session)."""
        ...

    def hold(self, repo: str, upload_id: str) -> AbstractContextManager[int]:
        """Use of the session for one request; yields its size. ObjectBusy when another
        request holds it (where the storage can tell), PathNotFound when it is gone."""
        ...

    def append(
        self, repo: str, upload_id: str, size: int, chunks: Iterable[bytes], *, last: bool
    ) -> int:
        """Store `chunks` at offset `size` (the session's size); returns the new size.
        ObjectBusy when another request stored bytes at that offset meanwhile. `last`:
        the final body (made durable before the commit)."""
        ...

    def commit(
        self, repo: str, upload_id: str, digest: str, size: int, *, link: bool = True
    ) -> None:
        """Check the session's `size` bytes hash to `digest` (DigestMismatch, nothing
        linked), put them at the blob's path unless it is there, link it in `repo` (unless
        `link` is False: bulk writers link later), and remove the session."""
        ...

    def cancel(self, repo: str, upload_id: str) -> None:
        """Remove the session (and what it alone made)."""
        ...


class RunningHashes:
    """upload id -> (bytes hashed so far, sha256 object), shared by a server's threads."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def new(self, upload_id: str) -> None:
        with self._lock:
            self._states[upload_id] = (0, hashlib.sha256())

    def take(self, upload_id: str, size: int) -> Any:
        """The hasher covering exactly `size` bytes, removed until `put` back; else None."""
        with self._lock:
            state = self._states.pop(upload_id, None)
        return state[1] if state is not None and state[0] == size else None

    def put(self, upload_id: str, size: int, hasher: Any) -> None:
        with self._lock:
            self._states[upload_id] = (size, hasher)

    def digest(self, upload_id: str, size: int, algorithm: str) -> str | None:
        """The digest of the first `size` bytes when the running hash covers them."""
        with self._lock:
            state = self._states.get(upload_id)
        if algorithm == "sha256" and state is not None and state[0] == size:
            return f"sha256:{state[1].hexdigest()}"
        return None

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._states.pop(upload_id, None)


class HashWorker:
    """Hashes chunks on its own thread (hashlib lets go of the GIL for large updates), so
    hashing overlaps reading the network and writing the storage."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.pending = threading.Semaphore(HASH_QUEUE)  # bounds the memory held in the queue
        self.thread = threading.Thread(target=self._run, name="hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            self.hasher.update(chunk)
            self.pending.release()

    def update(self, chunk: bytes) -> None:
        self.pending.acquire()
        self.queue.put(chunk)

    def close(self) -> None:
        """Wait until every chunk given so far is hashed."""
        self.queue.put(None)
        self.thread.join()


def hashed(chunks: Iterable[bytes], worker: HashWorker | None) -> Iterator[bytes]:
    for chunk in chunks:
        if worker is not None:
            worker.update(chunk)
        yield chunk


def digest_of(pieces: Iterable[bytes], algorithm: str) -> tuple[str, int]:
    """The digest of the bytes and their count."""
    hasher = hashlib.new(algorithm)
    count = 0
    for piece in pieces:
        hasher.update(piece)
        count += len(piece)
    return f"{algorithm}:{hasher.hexdigest()}", count


def read_object(driver: StorageDriver, path: str) -> Iterator[bytes]:
    with driver.open(path) as handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


class FilesystemUploads:
    """Sessions as registry 2.8.2 keeps them on a disk (see the module docstring)."""

    def __init__(self, writer: V2Writer, *, fsync: bool = True) -> None:
        self.writer = writer
        self.driver = writer.driver
        self.fsync = fsync
        self.hashes = RunningHashes()

    def start(self, repo: str) -> str:
        try:
            upload_id = self.writer.start_upload(repo)
        except BaseException:
            self.driver.remove_empty_parents(paths.uploads_dir(repo), paths.REPOSITORIES)
            raise
        self.hashes.new(upload_id)
        return upload_id

    def size(self, repo: str, upload_id: str) -> int:
        self.driver.stat(paths.upload_startedat(repo, upload_id))
        return self.driver.stat(paths.upload_data(repo, upload_id)).size

    @contextmanager
    def hold(self, repo: str, upload_id: str) -> Iterator[int]:
        with self.writer.hold_upload(repo, upload_id):
            yield self.driver.stat(paths.upload_data(repo, upload_id)).size

    def append(
        self, repo: str, upload_id: str, size: int, chunks: Iterable[bytes], *, last: bool
    ) -> int:
        """Append the body to `data` (the caller holds the session). A client that goes
        away leaves the bytes received so far (the session resumes from there); a storage
        error while writing (a full disk) removes the session: nothing half-written stays."""
        hasher = self.hashes.take(upload_id, size)
        handle = self.writer.append_upload(repo, upload_id)  # failing here, nothing written
        worker = HashWorker(hasher) if hasher is not None else None
        try:
            key = paths.upload_data(repo, upload_id)
            written = self._write(handle, key, size, hashed(chunks, worker), last)
        except StorageError:
            with suppress(StorageError, OSError):
                self.cancel(repo, upload_id)
            raise
        finally:
            if worker is not None:
                worker.close()
        if hasher is not None:
            self.hashes.put(upload_id, written, hasher)
        return written

    def _write(
        self, handle: BinaryIO, key: str, size: int, chunks: Iterable[bytes], sync: bool
    ) -> int:
        """Write to `handle` (closed on return); OSErrors of the file (not of the client)
        become StorageError of `key` (StorageFull when full). With `sync` the data is on
        disk before it is moved into `blobs/`: a blob path never names bytes a crash
        could lose; writeback of big bodies starts early so that sync finds little left."""
        written = kicked = size
        try:
            for chunk in chunks:
                try:
                    handle.write(chunk)
                    written += len(chunk)
                    if self.fsync and written - kicked >= WRITEBACK_STEP:
                        handle.flush()
                        _start_writeback(handle.fileno(), kicked, written - kicked)
                        kicked = written
                except OSError as exc:  # the file's, not the client's (the body raises those)
                    raise storage_error(key, exc) from None
            try:
                handle.flush()
                if sync and self.fsync:
                    os.fdatasync(handle.fileno())
                handle.close()
            except OSError as exc:
                raise storage_error(key, exc) from None
        finally:
            if not handle.closed:
                with suppress(OSError):
                    handle.close()
        return written

    def commit(
        self, repo: str, upload_id: str, digest: str, size: int, *, link: bool = True
    ) -> None:
        algorithm = split_digest(digest)[0]
        actual = self.hashes.digest(upload_id, size, algorithm)
        hashed_count = size
        if actual is None:
            pieces = read_object(self.driver, paths.upload_data(repo, upload_id))
            actual, hashed_count = digest_of(pieces, algorithm)
        if actual != digest:
            raise DigestMismatch(digest, actual)
        self.writer.commit_upload(repo, upload_id, digest, hashed_count, link=link)
        self.hashes.forget(upload_id)

    def cancel(self, repo: str, upload_id: str) -> None:
        self.writer.cancel_upload(repo, upload_id)
        self.driver.remove_empty_parents(paths.uploads_dir(repo), paths.REPOSITORIES)
        self.hashes.forget(upload_id)


def _load_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages, do not wait (Linux)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range out now (the disk works while the network
    still delivers)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
