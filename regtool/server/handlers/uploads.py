"""Blob uploads: POST (monolithic, mount, or session), PATCH, PUT, GET status, DELETE.

Sessions live where registry 2.8.2 keeps them (`_uploads/<uuid>/{startedat,data}`). Bodies
stream to `data` while being hashed; the running hash is kept in memory per session, and a
session resumed after a restart is re-hashed from its `data` on PUT. No `hashstates` are
written (2.8.2 re-reads `data` when they are missing, so trees stay interchangeable).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import re
import threading
from typing import Any

from regtool.layout.v2 import paths
from regtool.model.digest import split_digest
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, empty
from regtool.storage.driver import PathNotFound, StorageError

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
            upload_id = ctx.writer.start_upload(name)
            with _HASH_LOCK:
                _HASHES[upload_id] = (0, hashlib.sha256())
            _finish(ctx, req, name, upload_id, digest)
            return _created(name, digest)
        upload_id = ctx.writer.start_upload(name)
        with _HASH_LOCK:
            _HASHES[upload_id] = (0, hashlib.sha256())
    return empty(202, _session_headers(name, upload_id, 0))


def _mountable(ctx: Context, source: str, digest: str) -> bool:
    return ctx.blob_linked(source, digest) and ctx.writer.has_blob(digest)


def _session(ctx: Context, name: str, ref: str) -> tuple[str, int]:
    """The upload id and its current size; BLOB_UPLOAD_UNKNOWN when there is none."""
    if not _UUID.fullmatch(ref):
        raise ApiError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": ref[:80]})
    try:
        ctx.driver.stat(paths.upload_startedat(name, ref))
        size = ctx.driver.stat(paths.upload_data(name, ref)).size
    except (PathNotFound, StorageError):
        raise ApiError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": ref}) from None
    return ref, size


def upload_status(ctx: Context, req: Request, name: str, ref: str) -> Response:
    upload_id, size = _session(ctx, name, ref)
    return empty(204, _session_headers(name, upload_id, size))


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
    with ctx.writing():
        upload_id, size = _session(ctx, name, ref)
        if req.header("content-type") not in _OCTET_TYPES:
            raise ApiError("BLOB_UPLOAD_INVALID", "chunks must be application/octet-stream")
        _check_content_range(req, size, upload_id, name)
        size = _append(ctx, req, name, upload_id, size)
    return empty(202, _session_headers(name, upload_id, size))


def finish_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    expected = req.query.get("digest")
    with ctx.writing():
        upload_id, size = _session(ctx, name, ref)
        if not expected:
            raise ApiError("DIGEST_INVALID", "the digest parameter is required")
        digest = ctx.check_digest(expected)
        if req.has_body:
            _check_content_range(req, size, upload_id, name)
        _finish(ctx, req, name, upload_id, digest, size)
    return _created(name, digest)


def cancel_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    with ctx.writing():
        upload_id, _ = _session(ctx, name, ref)
        _cancel(ctx, name, upload_id)
    return empty(204)


def _append(
    ctx: Context, req: Request, name: str, upload_id: str, size: int, sync: bool = False
) -> int:
    """Stream the request body onto the session's data, hashing it; returns the new size.

    With `sync` (the last chunk) the data is flushed to disk before it is moved into
    `blobs/`, so a blob path never names bytes a crash could lose."""
    with _HASH_LOCK:
        state = _HASHES.pop(upload_id, None)
    hasher = state[1] if state is not None and state[0] == size else None
    written = kicked = size
    durable = ctx.driver.fsync
    worker = _HashWorker(hasher) if hasher is not None else None
    try:
        with ctx.writer.append_upload(name, upload_id) as handle:
            for chunk in req.body.chunks():
                if worker is not None:
                    worker.update(chunk)
                handle.write(chunk)
                written += len(chunk)
                if durable and written - kicked >= WRITEBACK_STEP:
                    handle.flush()
                    _start_writeback(handle.fileno(), kicked, written - kicked)
                    kicked = written
            if sync and durable:
                handle.flush()
                os.fdatasync(handle.fileno())
    finally:
        if worker is not None:
            worker.close()
    if hasher is not None:
        with _HASH_LOCK:
            _HASHES[upload_id] = (written, hasher)
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
    """Append the last body, check the digest, then move data to its blob and link it."""
    try:
        size = _append(ctx, req, name, upload_id, size, sync=True)
        actual = _digest_of_upload(ctx, name, upload_id, size, split_digest(digest)[0])
        if actual != digest:
            raise ApiError("DIGEST_INVALID", detail={"expected": digest, "actual": actual})
        ctx.writer.commit_upload(name, upload_id, digest)
    except BaseException:
        _cancel(ctx, name, upload_id)
        raise
    finally:
        _forget(upload_id)


def _digest_of_upload(ctx: Context, name: str, upload_id: str, size: int, algorithm: str) -> str:
    with _HASH_LOCK:
        state = _HASHES.get(upload_id)
    if algorithm == "sha256" and state is not None and state[0] == size:
        return f"sha256:{state[1].hexdigest()}"
    hasher = hashlib.new(algorithm)
    with ctx.driver.open(paths.upload_data(name, upload_id)) as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def _cancel(ctx: Context, name: str, upload_id: str) -> None:
    """Remove the session, and the folders it alone made (a wrong push leaves no trace)."""
    ctx.writer.cancel_upload(name, upload_id)
    ctx.driver.remove_empty_parents(paths.uploads_dir(name), paths.REPOSITORIES)
    _forget(upload_id)


def _forget(upload_id: str) -> None:
    with _HASH_LOCK:
        _HASHES.pop(upload_id, None)
