"""The routing table: URL path -> endpoint name plus its parameters.

Repository names contain slashes, so v2 routes are matched on their trailing path elements
(`.../manifests/<ref>`, `.../blobs/uploads/<id>`) and everything before is the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# (trailing elements, endpoint); None stands for the variable element (`ref`).
# First match wins, so upload routes come before the plain blob route.
V2_TABLE: tuple[tuple[tuple[str | None, ...], str], ...] = (
    (("blobs", "uploads", ""), "uploads"),
    (("blobs", "uploads"), "uploads"),
    (("blobs", "uploads", None), "upload"),
    (("blobs", None), "blob"),
    (("manifests", None), "manifest"),
    (("tags", "list"), "tags"),
    (("referrers", None), "referrers"),
)

# v1 routes below /v1/repositories/<name>/...
V1_REPOSITORY_TABLE: tuple[tuple[tuple[str | None, ...], str], ...] = (
    (("tags", None), "v1_tag"),
    (("tags",), "v1_tags"),
    (("images",), "v1_repository_images"),
)
V1_IMAGE_FILES = frozenset({"json", "ancestry", "layer"})

# the web page (below /ui): its pages, its static files and the JSON it reads.
# (leading elements, endpoint, how the rest reads): "" nothing more, "name" a repository
# name, "file" one element (ref), "image" a name then a tag or digest (ref)
UI_TABLE: tuple[tuple[tuple[str, ...], str, str], ...] = (
    ((), "ui_page", ""),
    (("repository",), "ui_page", "name"),
    (("image",), "ui_page", "image"),
    (("static",), "ui_static", "file"),
    (("api", "summary"), "ui_summary", ""),
    (("api", "repositories"), "ui_repositories", ""),
    (("api", "repository"), "ui_repository", "name"),
    (("api", "image"), "ui_image", "image"),
)


@dataclass(frozen=True, slots=True)
class Match:
    endpoint: str
    name: str = ""
    ref: str = ""


NOT_FOUND = Match("not_found")


@lru_cache(maxsize=4096)  # the same few paths again and again; a Match is immutable
def route(path: str) -> Match:
    """Which endpoint serves `path` (already percent-decoded, without the query)."""
    if path.startswith("/v2/") or path == "/v2":
        rest = path[4:]
        if rest == "":
            return Match("base")
        if rest in ("_catalog", "_catalog/"):
            return Match("catalog")
        return _match_tail(rest.split("/"), V2_TABLE)
    if path.startswith("/v1/"):
        return _route_v1(path[4:])
    if path == "/":
        return Match("root")
    if path == "/ui" or path.startswith("/ui/"):
        return _route_ui(path[4:])
    return NOT_FOUND


def _route_ui(rest: str) -> Match:
    parts = rest.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    for head, endpoint, shape in UI_TABLE:
        if tuple(parts[: len(head)]) != head:
            continue
        tail = parts[len(head) :]
        if shape == "" and not tail:
            return Match(endpoint)
        if shape == "name" and tail:
            return Match(endpoint, "/".join(tail))
        if shape == "file" and len(tail) == 1:
            return Match(endpoint, ref=tail[0])
        if shape == "image" and len(tail) >= 2:
            return Match(endpoint, "/".join(tail[:-1]), tail[-1])
    return NOT_FOUND


def _match_tail(parts: list[str], table: tuple[tuple[tuple[str | None, ...], str], ...]) -> Match:
    for tail, endpoint in table:
        size = len(tail)
        if len(parts) <= size:
            continue
        candidate = parts[-size:]
        if all(want is None or want == got for want, got in zip(tail, candidate, strict=True)):
            ref = next((got for want, got in zip(tail, candidate, strict=True) if want is None), "")
            return Match(endpoint, "/".join(parts[:-size]), ref)
    return NOT_FOUND


def _route_v1(rest: str) -> Match:
    if rest in ("_ping", "_ping/"):
        return Match("v1_ping")
    if rest in ("search", "search/"):
        return Match("v1_search")
    parts = rest.rstrip("/").split("/")
    if parts[0] == "repositories" and len(parts) > 2:
        return _match_tail(parts[1:], V1_REPOSITORY_TABLE)
    if parts[0] == "images" and len(parts) == 3 and parts[2] in V1_IMAGE_FILES:
        return Match("v1_image", parts[2], parts[1])
    return NOT_FOUND
