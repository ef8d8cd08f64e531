"""The one way regtool parses JSON it did not write: bounded in size and in nesting depth.

Stored manifests, configs, indexes and v1 files come from whoever could push or write the
tree. `json.loads` recurses once per nesting level, so a 1,500-deep array (which
distribution stores without complaint) raises RecursionError, and one just under the
interpreter's limit parses but breaks the next thing that walks it (repr, json.dumps).
`parse_json` turns both into JsonError: a document nested deeper than MAX_DEPTH is refused,
whatever the caller's own stack depth, so every command gives the same answer.
"""

from __future__ import annotations

import json
from typing import Any

# Real manifests and configs nest fewer than 10 levels; OCI lets them carry extra fields,
# so leave room, but stay far below the interpreter's recursion limit (1000).
MAX_DEPTH = 128
_CONTAINERS = (dict, list)


class JsonError(ValueError):
    """Bytes that are not a JSON document within regtool's bounds."""


def parse_json(raw: bytes | str, *, limit: int | None = None) -> Any:
    """The parsed document; JsonError for non-JSON, over `limit` bytes, or too deeply nested."""
    if limit is not None and len(raw) > limit:
        raise JsonError(f"larger than {limit} bytes")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonError(f"not JSON: {exc}") from None
    # deeper than MAX_DEPTH takes more openers than that, and as many closers: a short
    # document needs no count
    if len(raw) > 2 * MAX_DEPTH and _openers(raw) > MAX_DEPTH and _too_deep(doc):
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels")
    return doc


def _openers(raw: bytes | str) -> int:
    """An upper bound of the nesting depth: every '[' and '{', inside strings too."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _too_deep(doc: Any) -> bool:
    """Whether `doc` nests more than MAX_DEPTH arrays/objects (walked level by level)."""
    level = [doc] if isinstance(doc, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        below: list[Any] = []
        for node in level:
            values = node.values() if isinstance(node, dict) else node
            below.extend(v for v in values if isinstance(v, _CONTAINERS))
        level = below
    return False
