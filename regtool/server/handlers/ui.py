"""The web page's HTML and static files (package data in regtool/server/ui/).

`GET /` answers the page when the client prefers HTML (a browser) and the registry's JSON
404 otherwise, as before. Every page path below /ui serves the same index.html; app.js
reads the path and draws the page from the JSON endpoints (handlers/uiapi.py). Static
files are read once from the package. Every answer carries a Content-Security-Policy
that allows only the page's own script, style and JSON: no inline script runs.
"""

from __future__ import annotations

import threading
from importlib import resources

from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response

STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_files: dict[str, bytes] = {}
_files_lock = threading.Lock()


def static_file(name: str) -> bytes:
    """A file of the page, read from the package once."""
    with _files_lock:
        data = _files.get(name)
        if data is None:
            data = resources.files("regtool.server").joinpath("ui").joinpath(name).read_bytes()
            _files[name] = data
        return data


def _answer(name: str) -> Response:
    headers = {"Content-Type": STATIC_TYPES[name], **PAGE_HEADERS}
    return Response(200, headers, static_file(name))


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above JSON (browsers do; curl, docker and
    registry clients do not)."""
    html = json = 0.0
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = kind.lower()
        if kind == "text/html":
            html = max(html, quality)
        elif kind in ("application/json", "*/*"):
            json = max(json, quality)
    return html > 0 and html >= json


def root(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """`GET /`: the page for a browser, the registry's 404 for anything else."""
    if not prefers_html(req.header("accept")):
        raise ApiError("NOT_FOUND", detail={"path": req.path[:200]})
    return _answer("index.html")


def page(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """A page below /ui (home, a repository, an image): the one HTML document."""
    return _answer("index.html")


def static(ctx: Context, req: Request, name: str, ref: str) -> Response:
    if ref not in STATIC_TYPES:
        raise ApiError("NOT_FOUND", detail={"path": req.path[:200]})
    return _answer(ref)
