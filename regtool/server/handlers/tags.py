"""`GET /v2/<name>/tags/list` with `n`/`last` pagination and a `Link` header."""

from __future__ import annotations

from urllib.parse import quote

from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, json_response, parse_count


def paginate(
    items: list[str], req: Request, default_n: int | None = None
) -> tuple[list[str], int | None]:
    """The sorted page after `last`, at most `n` long; and n when more items follow."""
    raw_n = req.query.get("n")
    n = default_n
    if raw_n is not None and raw_n != "":
        n = parse_count(raw_n)
        if n is None:
            raise ApiError("PAGINATION_NUMBER_INVALID", detail={"n": raw_n[:40]})
    last = req.query.get("last")
    ordered = sorted(items)
    if last:
        ordered = [item for item in ordered if item > last]
    if n is None or len(ordered) <= n:
        return ordered, None
    return ordered[:n], n


def link(path: str, n: int, last: str) -> dict[str, str]:
    return {"Link": f'<{path}?n={n}&last={quote(last, safe="/")}>; rel="next"'}


def list_tags(ctx: Context, req: Request, name: str, ref: str) -> Response:
    if ctx.layout == "v1" or not ctx.repository_exists(name):
        raise ApiError("NAME_UNKNOWN", detail={"name": name})
    names = [t.tag for t in ctx.v2.tags(name)]
    page, n = paginate(names, req)
    path = f"/v2/{name}/tags/list"
    headers = link(path, n, page[-1]) if n is not None and page else None
    return json_response({"name": name, "tags": page}, headers=headers)
