"""`gc --summary` and `prune --summary`: what a plan deletes, one line per repository.

Blobs (v2) and image folders (v1) belong to no repository, they are shared by all of
them: each gets a line of its own, `(blobs)` and `(images)`, after the repositories.
"""

from __future__ import annotations

from collections.abc import Iterable

from regtool.cli import output as out
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcEntry

# kind -> the line an entry of no repository is counted on
_GLOBAL = {"blob": "(blobs)", "image": "(images)"}
_NAMED = ("manifest", "link", "tag", "file")  # ids `repo@digest`, `repo:tag[@digest]`


def repository_of(entry: GcEntry) -> str | None:
    """The repository an entry belongs to; None for blobs, v1 images and the like."""
    if entry.kind in _GLOBAL:
        return None
    name = v2paths.repository_of(entry.path)
    if name is not None:
        return name
    if entry.kind == "repository":
        return entry.id
    if entry.kind in _NAMED:
        return entry.id.split("@", 1)[0].split(":", 1)[0]
    return None


def summary_grid(entries: Iterable[GcEntry]) -> str:
    """REPOSITORY, ENTRIES, SIZE: repositories by name, then the shared lines."""
    counts: dict[str, list[int]] = {}
    shared: dict[str, list[int]] = {}
    for entry in entries:
        name = repository_of(entry)
        if name is None:
            slot = shared.setdefault(_GLOBAL.get(entry.kind, "(other)"), [0, 0])
        else:
            slot = counts.setdefault(name, [0, 0])
        slot[0] += 1
        slot[1] += entry.size
    lines = sorted(counts.items()) + sorted(shared.items())
    rows = [[name, f"{n:,}", out.human_size(size)] for name, (n, size) in lines]
    return out.grid(rows, ["REPOSITORY", "ENTRIES", "SIZE"])
