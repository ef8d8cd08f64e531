"""Requests, responses and the API errors of the OCI distribution specification.

A `Request` is what the transport parsed (method, path, query, headers, and a body to be
read on demand); a `Response` is what a handler answers (status, headers, and either bytes
or an open file to send with sendfile). `ApiError` carries one code of `ERROR_CODES`;
`app.py` is the one place that turns it into the spec's JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

# code -> (HTTP status, message), as distribution and the spec define them
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "The operation is unsupported."),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "unknown error"),
    "NOT_FOUND": (404, "not found"),
}


MAX_DIGITS = 18  # any count, offset or length a request may carry stays below 2**63


def parse_count(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """A non-negative decimal number of ASCII digits, at most `max_digits` long; else None.

    `str.isdigit()` alone is not enough: it accepts '²' (which int() refuses) and '٣'
    (which int() reads as 3), and int() of thousands of digits is slow, then raises."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


class ApiError(Exception):
    """An error answer: a spec code, optional message/detail, status and extra headers."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        detail: object = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        default_status, default_message = ERROR_CODES[code]
        super().__init__(f"{code}: {message or default_message}")
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}

    def body(self) -> bytes:
        entry: dict[str, object] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}, separators=(",", ":")).encode() + b"\n"


class Body(Protocol):
    """A request body read as it arrives (Content-Length or chunked)."""

    def chunks(self, size: int = ...) -> Iterator[bytes]: ...

    def read_all(self, limit: int) -> bytes:
        """The whole body; raises ApiError(413) when it is longer than `limit`."""
        ...


class EmptyBody:
    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        return iter(())

    def read_all(self, limit: int) -> bytes:
        return b""


@dataclass(slots=True)
class Request:
    method: str
    path: str  # decoded path without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: Body = field(default_factory=EmptyBody)
    user: str | None = None
    client: str = ""  # the peer's address (login throttling is per address)
    login_failure: Any = None  # auth.LoginFailure: why credentials were refused (access log)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def has_body(self) -> bool:
        return "transfer-encoding" in self.headers or self.headers.get(
            "content-length", "0"
        ) not in ("", "0")


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: BinaryIO | None = None  # sent with sendfile from `offset`, `length` bytes
    offset: int = 0
    length: int = 0

    @property
    def content_length(self) -> int:
        return self.length if self.file is not None else len(self.body)


def json_response(
    doc: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    merged = {"Content-Type": "application/json"}
    if headers:
        merged.update(headers)
    return Response(status, merged, body)


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status, headers or {})
