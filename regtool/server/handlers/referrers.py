"""`GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose subject it is.

Referrers are found by reading every manifest revision of the repository once; the result
is cached per repository and rebuilt when its revisions folder changes (or this server
writes a manifest there). Referrers deleted since are dropped when answering.
"""

from __future__ import annotations

from typing import Any

from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from regtool.model.jsondoc import JsonError, parse_json
from regtool.server.handlers.context import Context
from regtool.server.http import Request, Response, json_response
from regtool.storage.driver import StorageError


def get_referrers(ctx: Context, req: Request, name: str, ref: str) -> Response:
    subject = ctx.check_digest(ref)
    found = [] if ctx.layout == "v1" else _index(ctx, name).get(subject, [])
    found = [d for d in found if ctx.v2.has_manifest(name, d["digest"])]
    headers = {}
    wanted = req.query.get("artifactType")
    if wanted:
        found = [d for d in found if d.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    response = json_response(doc, headers=headers)
    response.headers["Content-Type"] = mt.OCI_INDEX
    return response


def _signature(ctx: Context, name: str) -> tuple[tuple[str, float], ...]:
    """What changes when a revision is added: folder mtimes on a disk; on an object store
    (no folders, so no mtimes) the revision names themselves."""
    base = paths.revisions_dir(name)
    marks: list[tuple[str, float]] = []
    if ctx.root is None:
        for algorithm in ctx.driver.list(base):
            folder = f"{base}/{algorithm.name}"
            marks.extend((f"{algorithm.name}:{e.name}", 0.0) for e in ctx.driver.list(folder))
        return tuple(marks)
    for entry in ctx.driver.list(base):
        try:
            marks.append((entry.name, ctx.driver.stat(f"{base}/{entry.name}").mtime))
        except StorageError:
            continue
    return tuple(marks)


def _index(ctx: Context, name: str) -> dict[str, list[dict[str, Any]]]:
    signature = _signature(ctx, name)
    cached = ctx.referrers_cache.get(name)
    if cached is not None and cached[0] == signature:
        return cached[1]
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for _link, digest, _issue in ctx.v2.revisions(name):
        stored = ctx.manifest(digest) if digest else None
        if stored is None:
            continue
        descriptor = _descriptor(digest or "", *stored)
        if descriptor is not None:
            by_subject.setdefault(descriptor.pop("subject"), []).append(descriptor)
    for entries in by_subject.values():
        entries.sort(key=lambda d: d["digest"])
    ctx.referrers_cache[name] = (signature, by_subject)
    return by_subject


def _descriptor(digest: str, raw: bytes, media_type: str) -> dict[str, Any] | None:
    try:
        doc = parse_json(raw)  # an unreadable manifest refers to nothing: skipped
        subject = doc.get("subject", {}).get("digest") if isinstance(doc, dict) else None
    except (JsonError, AttributeError):
        return None
    if not isinstance(subject, str):
        return None
    descriptor: dict[str, Any] = {
        "mediaType": media_type,
        "digest": digest,
        "size": len(raw),
        "subject": subject,
    }
    artifact_type = doc.get("artifactType")
    if not artifact_type and isinstance(doc.get("config"), dict):
        artifact_type = doc["config"].get("mediaType")
    if isinstance(artifact_type, str) and artifact_type:
        descriptor["artifactType"] = artifact_type
    if isinstance(doc.get("annotations"), dict) and doc["annotations"]:
        descriptor["annotations"] = doc["annotations"]
    return descriptor
