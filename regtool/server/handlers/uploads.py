"""Blob uploads: POST (monolithic, mount, or session), PATCH, PUT, GET status, DELETE.

The session mechanics (where bytes go, how they are hashed, made durable and committed)
belong to the storage: `ctx.uploads` (layout/v2/uploads.py) keeps them in registry 2.8.2's
`_uploads/<uuid>/` on a disk, or in the bucket on an object store, where any instance of
the server continues any session. These handlers check the protocol: ids, Content-Range
(416 when a chunk does not start where the data ends), digests.

A session serves one request at a time: a second request meanwhile is refused with 409
BLOB_UPLOAD_INVALID (on a disk, PATCH, PUT and DELETE hold the session; on an object store,
requests in one process exclude each other, and of two chunks written at the same offset
from different instances the second is refused). A storage error while writing (a full
disk) removes the session: nothing half-written stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from regtool.layout.v2.writer import DigestMismatch
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, empty
from regtool.storage.driver import ObjectBusy, PathNotFound, StorageError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTENT_RANGE = re.compile(r"(?:bytes )?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]{1,18}|\*))?")
_OCTET_TYPES = ("", "application/octet-stream")


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
    ctx.check_writable()
    if mount and source:
        digest = ctx.check_digest(mount)
        ctx.activity.touch(name, (digest,))  # before the check: a gc run spares it from now
        if ctx.check_name(source) and _mountable(ctx, source, digest):
            with ctx.writing():
                ctx.writer.link_blob(name, digest)
            return _created(name, digest)
    if expected is not None:
        digest = ctx.check_digest(expected)
        upload_id = ctx.uploads.start(name)
        ctx.activity.session_opened(name, upload_id)
        with _held(ctx, name, upload_id) as size:
            _finish(ctx, req, name, upload_id, digest, size)
        return _created(name, digest)
    upload_id = ctx.uploads.start(name)
    ctx.activity.session_opened(name, upload_id)
    return empty(202, _session_headers(name, upload_id, 0))


def _mountable(ctx: Context, source: str, digest: str) -> bool:
    return ctx.blob_linked(source, digest) and ctx.writer.has_blob(digest)


def _unknown(ref: str) -> ApiError:
    return ApiError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": ref[:80]})


def _busy(ref: str) -> ApiError:
    return ApiError(
        "BLOB_UPLOAD_INVALID",
        "another request is using this upload; retry when it has finished",
        detail={"uuid": ref},
        status=409,
    )


@contextmanager
def _held(ctx: Context, name: str, ref: str) -> Iterator[int]:
    """Hold the session `ref` for this request; yields its size. A session held by another
    request (in this server or another one on the same storage) answers 409; a missing
    one 404 (other storage errors propagate: they are the server's 500)."""
    if not _UUID.fullmatch(ref):
        raise _unknown(ref)
    with ExitStack() as stack:
        stack.enter_context(ctx.activity.session_busy(ref))
        try:
            size = stack.enter_context(ctx.uploads.hold(name, ref))
        except ObjectBusy:
            raise _busy(ref) from None
        except PathNotFound:
            raise _unknown(ref) from None
        yield size


def upload_status(ctx: Context, req: Request, name: str, ref: str) -> Response:
    if not _UUID.fullmatch(ref):
        raise _unknown(ref)
    if ctx.store.uploads is None:  # a read-only server keeps no sessions
        raise _unknown(ref)
    try:
        size = ctx.uploads.size(name, ref)
    except PathNotFound:
        raise _unknown(ref) from None
    return empty(204, _session_headers(name, ref, size))


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
    ctx.check_writable()  # no storage lock while a body streams in: gc may run meanwhile
    with _held(ctx, name, ref) as size:
        if req.header("content-type") not in _OCTET_TYPES:
            raise ApiError("BLOB_UPLOAD_INVALID", "chunks must be application/octet-stream")
        _check_content_range(req, size, ref, name)
        size = _append(ctx, req, name, ref, size)
    return empty(202, _session_headers(name, ref, size))


def finish_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    expected = req.query.get("digest")
    ctx.check_writable()
    with _held(ctx, name, ref) as size:
        if not expected:
            raise ApiError("DIGEST_INVALID", "the digest parameter is required")
        digest = ctx.check_digest(expected)
        if req.has_body:
            _check_content_range(req, size, ref, name)
        _finish(ctx, req, name, ref, digest, size)
    return _created(name, digest)


def cancel_upload(ctx: Context, req: Request, name: str, ref: str) -> Response:
    with ctx.writing(), _held(ctx, name, ref):
        ctx.uploads.cancel(name, ref)
    ctx.activity.session_closed(ref)
    return empty(204)


def _append(
    ctx: Context, req: Request, name: str, upload_id: str, size: int, last: bool = False
) -> int:
    """Store the request body at the session's end; returns the new size. A chunk another
    instance stored at the same offset meanwhile answers 409; storage errors propagate
    (500, or 507 when full: the storage removed what it half wrote)."""
    try:
        return ctx.uploads.append(name, upload_id, size, req.body.chunks(), last=last)
    except ObjectBusy:
        raise _busy(upload_id) from None


def _finish(
    ctx: Context, req: Request, name: str, upload_id: str, digest: str, size: int = 0
) -> None:
    """Store the last body, then commit: the storage checks the digest before anything is
    linked. Only the commit holds the storage lock (shared), not the body streaming in.
    Any failure removes the session, except a lock held by gc past the timeout: the bytes
    are stored, and the client's retried PUT commits them."""
    try:
        size = _append(ctx, req, name, upload_id, size, last=True)
        with ctx.writing():
            ctx.activity.touch(name, (digest,))
            ctx.uploads.commit(name, upload_id, digest, size)
        ctx.activity.session_closed(upload_id)
    except ApiError as exc:
        if exc.code != "UNAVAILABLE":
            _discard(ctx, name, upload_id)
        raise
    except DigestMismatch as exc:
        _discard(ctx, name, upload_id)
        raise ApiError(
            "DIGEST_INVALID", detail={"expected": exc.expected, "actual": exc.actual}
        ) from None
    except BaseException:
        _discard(ctx, name, upload_id)
        raise


def _discard(ctx: Context, name: str, upload_id: str) -> None:
    """Remove the session on an error path: the error being raised matters more than a
    failed cleanup."""
    with suppress(StorageError, OSError):
        ctx.uploads.cancel(name, upload_id)
        ctx.activity.session_closed(upload_id)
