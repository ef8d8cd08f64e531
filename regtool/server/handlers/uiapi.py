"""The JSON the web page reads, from the background summary and the CLI's own ops.

Sizes are exact byte counts with the human form `ls` prints beside them (`*_human`);
names are as stored (`repository`), with the short form `ls` shows (`name`). Nothing here
writes. Before the first summary is known, the endpoints that need it answer 503
UNAVAILABLE with Retry-After (the summary endpoint says `"state": "computing"`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from regtool.errors import RegtoolError, UnknownReferenceError, UnreadableError, UsageError
from regtool.model.digest import short
from regtool.model.units import human_size
from regtool.ops.imageinfo import config_summary
from regtool.ops.inventory import matches, short_name
from regtool.ops.layers import image_layers, report_document
from regtool.ops.ls import RepositoryRow, TagRow
from regtool.server.handlers.context import Context
from regtool.server.http import ApiError, Request, Response, json_response, parse_count
from regtool.server.summary import Summary

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CHART_ROWS = 25
GLOB = frozenset("*?[")
SUMMARY_FIELDS = (
    "layout",
    "repositories",
    "tags",
    "blobs",
    "tagged_bytes",
    "exclusive_bytes",
    "shared_bytes",
    "saved_bytes",
    "gc_bytes",
    "gc_entries",
    "gc_blobs",
    "gc_problems",
    "untagged_manifests",
    "untagged_bytes",
    "stored_bytes",
    "complete",
    "started",
    "computed_at",
    "seconds",
    "error",
)
HUMAN = {"tagged_bytes", "exclusive_bytes", "shared_bytes", "saved_bytes", "gc_bytes"} | {
    "untagged_bytes",
    "stored_bytes",
}


def _summary(ctx: Context) -> Summary | None:
    return ctx.summaries.current() if ctx.summaries is not None else None


def _needed(ctx: Context) -> Summary:
    summary = _summary(ctx)
    if summary is None:
        raise ApiError(
            "UNAVAILABLE", "the storage summary is being computed", headers={"Retry-After": "2"}
        )
    return summary


def summary(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """The storage summary and the chart's rows (the largest repositories)."""
    found = _summary(ctx)
    if found is None:
        return json_response({"state": "computing"})
    doc: dict[str, Any] = {field: getattr(found, field) for field in SUMMARY_FIELDS}
    for field in HUMAN:
        doc[f"{field}_human"] = human_size(doc[field])
    largest = sorted(found.repository_rows, key=lambda row: (-row.size, row.repository))
    return json_response(
        {
            "state": "ready" if found.complete else "partial",
            "summary": doc,
            "chart": [_repository(row) for row in largest[:CHART_ROWS]],
        }
    )


def _repository(row: RepositoryRow) -> dict[str, Any]:
    return {
        "repository": row.repository,
        "name": short_name(row.repository),
        "tags": row.tags,
        "size": row.size,
        "exclusive": row.exclusive,
        "shared": row.shared,
        "size_human": human_size(row.size),
        "exclusive_human": human_size(row.exclusive),
        "shared_human": human_size(row.shared),
        "warnings": list(row.warnings),
    }


def _query_number(req: Request, key: str, default: int) -> int:
    text = req.query.get(key)
    if text is None or text == "":
        return default
    number = parse_count(text)
    if number is None:
        raise ApiError("PAGINATION_NUMBER_INVALID", detail={key: text[:40]})
    return number


def _filter(rows: tuple[RepositoryRow, ...], query: str) -> list[RepositoryRow]:
    """A glob (`centos*`, as `ls` takes) when it has *, ? or [; else a case-insensitive
    substring of the name as shown or as stored."""
    if not query:
        return list(rows)
    if GLOB & set(query):
        return [row for row in rows if matches(row.repository, query)]
    needle = query.casefold()
    return [row for row in rows if needle in row.repository.casefold()]


def repositories(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """`?q=&offset=&limit=`: a page of the repositories in `ls --repos` order."""
    found = _needed(ctx)
    offset = _query_number(req, "offset", 0)
    limit = min(_query_number(req, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT, MAX_LIMIT)
    query = req.query.get("q", "").strip()
    rows = sorted(_filter(found.repository_rows, query), key=lambda r: short_name(r.repository))
    return json_response(
        {
            "total": len(found.repository_rows),
            "matched": len(rows),
            "offset": offset,
            "limit": limit,
            "q": query,
            "repositories": [_repository(row) for row in rows[offset : offset + limit]],
        }
    )


def _stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _tag(ctx: Context, row: TagRow) -> dict[str, Any]:
    return {
        "tag": row.tag,
        "digest": row.digest,
        "short_digest": short(row.digest) if row.digest else None,
        "media_type": row.media_type,
        "platforms": list(row.platforms),
        "size": row.size,
        "exclusive": row.exclusive,
        "size_human": human_size(row.size),
        "exclusive_human": human_size(row.exclusive),
        "created": row.created,
        "pushed": _stamp(ctx.tag_pushed(row.repository, row.tag)),
        "layers": row.layers,
        "warnings": list(row.warnings),
    }


def repository(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """One repository: its `ls --repos` row and its tags (`ls` rows), newest first."""
    ctx.check_name(name)
    found = _needed(ctx)
    row = next((r for r in found.repository_rows if r.repository == name), None)
    if row is None:
        raise ApiError("NAME_UNKNOWN", detail={"name": name})
    tags = [_tag(ctx, tag) for tag in found.tag_rows if tag.repository == name]
    tags.sort(key=lambda t: t["tag"])
    tags.sort(key=lambda t: (t["pushed"] or "", t["created"] or ""), reverse=True)
    return json_response({**_repository(row), "tag_rows": tags})


def image(ctx: Context, req: Request, name: str, ref: str) -> Response:
    """An image by tag or digest (`?platform=` for an index): `layers --format json`'s
    document, the config's summary and history, and who shares how many of its layers."""
    ctx.check_name(name)
    found = _needed(ctx)
    reference = f"{name}@{ref}" if ":" in ref else f"{name}:{ref}"
    reader = ctx.store.reread()
    try:
        report = image_layers(reader, reference, req.query.get("platform") or None, found.inventory)
    except UnknownReferenceError as exc:
        raise ApiError("MANIFEST_UNKNOWN", exc.message, detail={"reference": reference}) from None
    except UsageError as exc:
        raise ApiError("UNKNOWN", exc.message, status=400) from None
    except UnreadableError as exc:
        raise ApiError("UNKNOWN", exc.message) from None
    except RegtoolError as exc:
        raise ApiError("UNKNOWN", exc.message) from None
    doc = report_document(report)
    config = config_summary(reader, report.config)
    layers = doc["layers"]
    assert isinstance(layers, list)
    for layer in layers:
        layer["size_human"] = human_size(layer["size"])
        layer["short_digest"] = short(layer["digest"])
    return json_response(
        {
            "layers_report": doc,
            "size_human": human_size(report.size),
            "config_summary": asdict(config)
            if config is not None and not isinstance(config, str)
            else None,
            "config_error": config if isinstance(config, str) else None,
            "sharers": _sharers(report.layers),
        }
    )


def _sharers(layers: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every other tag sharing a layer: how many of this image's layers (from the base up:
    `base` is the length of the shared run from the first layer) and their bytes."""
    found: dict[str, dict[str, Any]] = {}
    for position, layer in enumerate(layers):
        for label in layer.shared_with:
            entry = found.setdefault(
                label,
                {"label": label, "layers": 0, "bytes": 0, "base": 0},
            )
            entry["layers"] += 1
            entry["bytes"] += layer.size
            if entry["base"] == position:  # every layer below this one is shared too
                entry["base"] += 1
    result = []
    for entry in found.values():
        repository, _, tag = entry["label"].rpartition(":")
        entry.update(repository=repository, tag=tag, name=short_name(repository))
        entry["bytes_human"] = human_size(entry["bytes"])
        result.append(entry)
    result.sort(key=lambda e: (-e["layers"], -e["bytes"], e["label"]))
    return result
