"""The routing table: URL path -> endpoint name plus its parameters.

Repository names contain slashes, so v2 routes are matched on their trailing path elements
(`.../manifests/<ref>`, `.../blobs/uploads/<id>`) and everything before is the name.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Match:
    endpoint: str
    name: str = ""
    ref: str = ""


NOT_FOUND = Match("not_found")


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
