"""The legacy read endpoints scripts of the old registry call: /v1/_ping, /v1/search, and
(on a v1 storage) tags, image json, ancestry and layer."""

from __future__ import annotations

from regtool.layout.v1 import paths as v1paths
from regtool.model.config import MAX_CONFIG_BYTES
from regtool.model.digest import is_v1_id
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, json_response
from regtool.storage.driver import PathNotFound, StorageError

V1_HEADERS = {"X-Docker-Registry-Version": "0.9.1", "X-Docker-Registry-Standalone": "True"}


def ping(ctx: Context, req: Request, name: str, ref: str) -> Response:
    return json_response(True, headers=V1_HEADERS)


def search(ctx: Context, req: Request, name: str, ref: str) -> Response:
    query = req.query.get("q", "")
    reader = ctx.v1 if ctx.v1 is not None else ctx.v2
    needle = query.lower()
    names = [r.name for r in reader.repositories() if needle in r.name.lower()]
    results = [{"description": "", "name": n} for n in names]
    doc = {"num_results": len(results), "query": query, "results": results}
    return json_response(doc, headers=V1_HEADERS)


def _repository(ctx: Context, name: str) -> str:
    """The stored v1 name (`library/` added to a bare name); NAME_UNKNOWN when absent."""
    stored = ctx.check_name(name if "/" in name else f"{v1paths.LIBRARY}/{name}")
    if ctx.v1 is None or not ctx.driver.exists(v1paths.repository_dir(stored)):
        raise ApiError("NAME_UNKNOWN", detail={"name": name})
    return stored


def _tags(ctx: Context, name: str) -> dict[str, str]:
    assert ctx.v1 is not None
    return {t.tag: t.digest for t in ctx.v1.tags(name) if t.digest is not None}


def tags(ctx: Context, req: Request, name: str, ref: str) -> Response:
    return json_response(_tags(ctx, _repository(ctx, name)), headers=V1_HEADERS)


def tag(ctx: Context, req: Request, name: str, ref: str) -> Response:
    found = _tags(ctx, _repository(ctx, name)).get(ref)
    if found is None:
        raise ApiError("MANIFEST_UNKNOWN", "Tag not found", detail={"tag": ref[:200]})
    return json_response(found, headers=V1_HEADERS)


def repository_images(ctx: Context, req: Request, name: str, ref: str) -> Response:
    stored = _repository(ctx, name)
    assert ctx.v1 is not None
    seen: dict[str, None] = {}
    for image_id in _tags(ctx, stored).values():
        for member in ctx.v1.chain(image_id)[0]:
            seen.setdefault(member)
    return json_response([{"id": i} for i in seen], headers=V1_HEADERS)


def image(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """`name` is the file asked for (json, ancestry or layer), `ref` the image id."""
    if ctx.v1 is None or not is_v1_id(ref) or not ctx.v1.has_manifest("", ref):
        raise ApiError("NOT_FOUND", "Image not found", detail={"id": ref[:80]})
    headers = dict(V1_HEADERS)
    try:
        if name == "json":
            info = ctx.v1.image(ref)
            if info.layer_size is not None:
                headers["X-Docker-Size"] = str(info.layer_size)
            headers["Content-Type"] = "application/json"
            body = ctx.driver.get(v1paths.image_json(ref), MAX_CONFIG_BYTES)
            return Response(200, headers, body)
        if name == "ancestry":
            chain, _issues = ctx.v1.chain(ref)
            return json_response(list(chain), headers=headers)
        path = v1paths.image_layer(ref)
        size = ctx.driver.stat(path).size
        headers["Content-Type"] = "application/octet-stream"
        if req.method == "HEAD":
            headers["Content-Length"] = str(size)
            return Response(200, headers)
        return Response(200, headers, file=ctx.driver.open(path), length=size)
    except (PathNotFound, StorageError):
        raise ApiError("NOT_FOUND", "Image not found", detail={"id": ref}) from None
