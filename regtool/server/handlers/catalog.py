"""`GET /v2/_catalog`: repository names, sorted, with `n`/`last` pagination."""

from __future__ import annotations

from regtool.server.handlers.context import Context
from regtool.server.handlers.tags import link, paginate
from regtool.server.http import Request, Response, json_response

DEFAULT_N = 100  # what registry 2.8.2 pages by when `n` is not given


def catalog(ctx: Context, req: Request, name: str, ref: str) -> Response:
    names = [] if ctx.layout == "v1" else [r.name for r in ctx.v2.repositories()]
    page, n = paginate(names, req, DEFAULT_N)
    headers = link("/v2/_catalog", n, page[-1]) if n is not None and page else None
    return json_response({"repositories": page}, headers=headers)


def base(ctx: Context, req: Request, name: str, ref: str) -> Response:
    return json_response({})
