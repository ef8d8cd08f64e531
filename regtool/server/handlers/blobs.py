"""GET/HEAD (with Range) and DELETE of `/v2/<name>/blobs/<digest>`.

A GET is answered from the storage (sendfile from a disk, ranged reads streamed from an
object store), or, on an object store with redirects on (distribution's default unless
`storage.redirect.disable`), by a 307 to a presigned URL of the blob: the bytes then go
from the store to the client directly.
"""

from __future__ import annotations

import re

from regtool.layout.v2 import paths
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, empty
from regtool.storage.driver import PathNotFound

_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")  # ASCII digits, below 2**63


def get_blob(ctx: Context, req: Request, name: str, ref: str) -> Response:
    digest = ctx.check_digest(ref)
    if not ctx.blob_linked(name, digest):
        raise ApiError("BLOB_UNKNOWN", detail={"digest": digest})
    ctx.activity.touch(None, (digest,))  # a push that found it will name it: gc spares it
    path = paths.blob_data(digest)
    try:
        size = ctx.driver.stat(path).size
    except PathNotFound:  # other storage errors answer 500: the blob may well exist
        raise ApiError("BLOB_UNKNOWN", detail={"digest": digest}) from None
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    if req.method == "GET" and ctx.options.redirect and size > 0:
        url = ctx.store.signed_url(path)  # None on a local folder: served below
        if url is not None:  # as distribution does; the client sends its Range there
            return empty(307, {"Location": url, "Docker-Content-Digest": digest})
    start, end, status = 0, size - 1, 200
    wanted = req.header("range")
    if wanted:
        start, end = parse_range(wanted, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    if req.method == "HEAD" or length == 0:
        response = empty(status, headers)
        response.length = length
        headers["Content-Length"] = str(length)
        return response
    handle = ctx.driver.open(path)
    return Response(status, headers, file=handle, offset=start, length=length)


def parse_range(value: str, size: int) -> tuple[int, int]:
    """First range of a `bytes=` Range header as (start, end inclusive); 416 if unusable."""
    match = _RANGE.fullmatch(value.split(",")[0].strip())
    unsatisfiable = ApiError(
        "RANGE_INVALID",
        "requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if match is None or (not match.group(1) and not match.group(2)):
        raise unsatisfiable
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0:
            raise unsatisfiable
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, end


def delete_blob(ctx: Context, req: Request, name: str, ref: str) -> Response:
    digest = ctx.check_digest(ref)
    with ctx.writing(deleting=True):
        if not ctx.blob_linked(name, digest):
            raise ApiError("BLOB_UNKNOWN", detail={"digest": digest})
        ctx.writer.unlink_blob(name, digest)
    ctx.changed()
    return empty(202, {"Docker-Content-Digest": digest})
