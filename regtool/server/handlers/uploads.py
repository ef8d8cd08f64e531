"""Blob uploads: POST (monolithic, mount, or session), PATCH, PUT, GET status, DELETE.

Sessions live where registry 2.8.2 keeps them (`_uploads/<uuid>/{startedat,data}`). Bodies
stream to `data` while being hashed; the running hash is kept in memory per session, and a
session resumed after a restart is re-hashed from its `data` on PUT. No `hashstates` are
written (2.8.2 re-reads `data` when they are missing, so trees stay interchangeable).

A session serves one request at a time: PATCH, PUT and DELETE hold it (flock on its
`startedat`, so servers sharing the storage exclude each other too) and a second request
meanwhile is refused with 409 BLOB_UPLOAD_INVALID. The bytes committed are therefore the
bytes hashed, and the commit checks their size once more before it links the blob. A
storage error while writing (a full disk) removes the session: nothing half-written stays.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, BinaryIO

from regtool.layout.v2 import paths
from regtool.model.digest import split_digest
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, empty
from regtool.storage.driver import ObjectBusy, PathNotFound, StorageError, storage_error

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTENT_RANGE = re.compile(r"(?:bytes )?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]{1,18}|\*))?")
_OCTET_TYPES = ("", "application/octet-stream")
WRITEBACK_STEP = 8 << 20
HASH_QUEUE = 8  # chunks (of up to 1 MiB) waiting for the hashing thread

# upload id -> (bytes hashed so far, sha256 object); guarded by _HASH_LOCK
_HASHES: dict[str, tuple[int, Any]] = {}
_HASH_LOCK = threading.Lock()


def _location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _range(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": _location(name, upload_id),
        "Range": _range(size),
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


def start_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    mount, source = req.query.get("mount"), req.query.get("from")
    expected = req.query.get("digest")
    with ctx.writing():
        if mount and source:
            digest = ctx.check_digest(mount)
            if ctx.check_name(source) and _mountable(ctx, source, digest):
                ctx.writer.link_blob(name, digest)
                return _created(name, digest)
        if expected is not None:
            digest = ctx.check_digest(expected)
            upload_id = _open(ctx, name)
            with _held(ctx, name, upload_id):
                _finish(ctx, req, name, upload_id, digest)
            return _created(name, digest)
        upload_id = _open(ctx, name)
    return empty(202, _session_headers(name, upload_id, 0))


def _open(ctx: Context, name: str) -> str:
    """A new session, with an empty running hash."""
    try:
        upload_id = ctx.writer.start_upload(name)
    except BaseException:
        ctx.driver.remove_empty_parents(paths.uploads_dir(name), paths.REPOSITORIES)
        raise
    with _HASH_LOCK:
        _HASHES[upload_id] = (0, hashlib.sha256())
    return upload_id


def _mountable(ctx: Context, source: str, digest: str) -> bool:
    return ctx.blob_linked(source, digest) and ctx.writer.has_blob(digest)


def _unknown(ref: str) -> ApiError:
    return ApiError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": ref[:80]})


def _data_size(ctx: Context, name: str, upload_id: str) -> int:
    """The session's current size; BLOB_UPLOAD_UNKNOWN when it has no data (other storage
    errors propagate: they are the server's 500, not the client's 404)."""
    try:
        return ctx.driver.stat(paths.upload_data(name, upload_id)).size
    except PathNotFound:
        raise _unknown(upload_id) from None


@contextmanager
def _held(ctx: Context, name: str, ref: str) -> Iterator[int]:
    """Hold the session `ref` for this request; yields its size. A session held by another
    request (in this server or another one on the same storage) answers 409."""
    if not _UUID.fullmatch(ref):
        raise _unknown(ref)
    with ExitStack() as stack:
        try:
            stack.enter_context(ctx.writer.hold_upload(name, ref))
        except ObjectBusy:
            raise ApiError(
                "BLOB_UPLOAD_INVALID",
                "another request is using this upload; retry when it has finished",
                detail={"uuid": ref},
                status=409,
            ) from None
        except PathNotFound:
            raise _unknown(ref) from None
        yield _data_size(ctx, name, ref)


def upload_status(ctx: Context, req: Request, name: str, ref: str) -> Response:
    if not _UUID.fullmatch(ref):
        raise _unknown(ref)
    try:
        ctx.driver.stat(paths.upload_startedat(name, ref))
    except PathNotFound:
        raise _unknown(ref) from None
    return empty(204, _session_headers(name, ref, _data_size(ctx, name, ref)))


def _check_content_range(req: Request, size: int, upload_id: str, name: str) -> None:
    """A chunk must start where the data ends (416 for out-of-order or repeated chunks)."""
    value = req.header("content-range")
    if not value:
        return
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None or int(match.group(1)) != size or int(match.group(2)) < size:
        raise ApiError(
            "RANGE_INVALID",
            f"chunk must start at byte {size}",
            headers=_session_headers(name, upload_id, size),
        )
    declared = int(match.group(2)) - int(match.group(1)) + 1
    length = req.header("content-length")
    if length.isdigit() and int(length) != declared:
        raise ApiError("SIZE_INVALID", detail={"content-range": value, "content-length": length})


def patch_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    with ctx.writing(), _held(ctx, name, ref) as size:
        if req.header("content-type") not in _OCTET_TYPES:
            raise ApiError("BLOB_UPLOAD_INVALID", "chunks must be application/octet-stream")
        _check_content_range(req, size, ref, name)
        size = _append(ctx, req, name, ref, size)
    return empty(202, _session_headers(name, ref, size))


def finish_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    expected = req.query.get("digest")
    with ctx.writing(), _held(ctx, name, ref) as size:
        if not expected:
            raise ApiError("DIGEST_INVALID", "the digest parameter is required")
        digest = ctx.check_digest(expected)
        if req.has_body:
            _check_content_range(req, size, ref, name)
        _finish(ctx, req, name, ref, digest, size)
    return _created(name, digest)


def cancel_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    with ctx.writing(), _held(ctx, name, ref):
        _cancel(ctx, name, ref)
    return empty(204)


def _append(
    ctx: Context, req: Request, name: str, upload_id: str, size: int, sync: bool = False
) -> int:
    """Stream the request body onto the session's data, hashing it; returns the new size.

    With `sync` (the last chunk) the data is flushed to disk before it is moved into
    `blobs/`, so a blob path never names bytes a crash could lose. A storage error (disk
    full, I/O error) removes the session and raises StorageError (StorageFull when full);
    a client that goes away leaves the bytes received so far (the session resumes)."""
    with _HASH_LOCK:
        state = _HASHES.pop(upload_id, None)
    hasher = state[1] if state is not None and state[0] == size else None
    handle = ctx.writer.append_upload(name, upload_id)  # failing here, nothing was written
    worker = _HashWorker(hasher) if hasher is not None else None
    try:
        written = _write_body(
            ctx, req, handle, paths.upload_data(name, upload_id), size, worker, sync
        )
    except StorageError:
        _discard(ctx, name, upload_id)
        raise
    finally:
        if worker is not None:
            worker.close()
    if hasher is not None:
        with _HASH_LOCK:
            _HASHES[upload_id] = (written, hasher)
    return written


def _write_body(
    ctx: Context,
    req: Request,
    handle: BinaryIO,
    key: str,
    size: int,
    worker: _HashWorker | None,
    sync: bool,
) -> int:
    """Write the body to `handle` (closed on return); OSErrors of the file (not of the
    client) become StorageError of `key`."""
    written = kicked = size
    durable = ctx.store.fsync
    try:
        for chunk in req.body.chunks():
            if worker is not None:
                worker.update(chunk)
            try:
                handle.write(chunk)
                written += len(chunk)
                if durable and written - kicked >= WRITEBACK_STEP:
                    handle.flush()
                    _start_writeback(handle.fileno(), kicked, written - kicked)
                    kicked = written
            except OSError as exc:  # the file's, not the client's (the body raises those)
                raise storage_error(key, exc) from None
        try:
            handle.flush()
            if sync and durable:
                os.fdatasync(handle.fileno())
            handle.close()
        except OSError as exc:
            raise storage_error(key, exc) from None
    finally:
        if not handle.closed:
            with suppress(OSError):
                handle.close()
    return written


class _HashWorker:
    """Hashes chunks on its own thread (hashlib lets go of the GIL for large updates), so
    hashing overlaps reading the network and writing the disk."""

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
    """Ask the kernel to start writing a range out now, so the final fdatasync finds
    little left to do (the disk works while the network still delivers)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _finish(
    ctx: Context, req: Request, name: str, upload_id: str, digest: str, size: int = 0
) -> None:
    """Append the last body, check the digest, then move data to its blob and link it.

    The caller holds the session, so the bytes hashed are the bytes moved; the commit
    still checks their count before and after the move. Any failure removes the session."""
    try:
        size = _append(ctx, req, name, upload_id, size, sync=True)
        actual, hashed = _digest_of_upload(ctx, name, upload_id, size, split_digest(digest)[0])
        if actual != digest:
            raise ApiError("DIGEST_INVALID", detail={"expected": digest, "actual": actual})
        ctx.writer.commit_upload(name, upload_id, digest, hashed)
    except BaseException:
        _discard(ctx, name, upload_id)
        raise
    finally:
        _forget(upload_id)


def _digest_of_upload(
    ctx: Context, name: str, upload_id: str, size: int, algorithm: str
) -> tuple[str, int]:
    """The digest of the session's data and the byte count it covers: the running hash
    when it covers `size` bytes, else the data re-read from the storage."""
    with _HASH_LOCK:
        state = _HASHES.get(upload_id)
    if algorithm == "sha256" and state is not None and state[0] == size:
        return f"sha256:{state[1].hexdigest()}", size
    hasher = hashlib.new(algorithm)
    count = 0
    with ctx.driver.open(paths.upload_data(name, upload_id)) as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            count += len(chunk)
    return f"{algorithm}:{hasher.hexdigest()}", count


def _cancel(ctx: Context, name: str, upload_id: str) -> None:
    """Remove the session, and the folders it alone made (a wrong push leaves no trace)."""
    ctx.writer.cancel_upload(name, upload_id)
    ctx.driver.remove_empty_parents(paths.uploads_dir(name), paths.REPOSITORIES)
    _forget(upload_id)


def _discard(ctx: Context, name: str, upload_id: str) -> None:
    """`_cancel` on an error path: the error being raised matters more than a failed cleanup."""
    with suppress(StorageError, OSError):
        _cancel(ctx, name, upload_id)
    _forget(upload_id)


def _forget(upload_id: str) -> None:
    with _HASH_LOCK:
        _HASHES.pop(upload_id, None)
