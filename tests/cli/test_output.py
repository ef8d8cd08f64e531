"""The JSON writer streams big listings yet writes exactly what json.dumps would."""

from __future__ import annotations

import json
from dataclasses import dataclass

from regtool.cli import output
from regtool.ops.gc import GcEntry


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    size: int
    platforms: tuple[str, ...]
    extra: dict[str, object]


def written(data: object) -> str:
    pieces: list[str] = []
    output.write_json(data, pieces.append)
    return "".join(pieces)


def test_streamed_json_is_byte_for_byte_json_dumps(monkeypatch):
    monkeypatch.setattr(output, "_STREAM_BATCH", 3)  # several batches, and a partial one
    rows = [Row(f"r\u00e9po/{i}", i, ("linux/amd64",) * (i % 2), {"k": None}) for i in range(8)]
    entries = tuple(GcEntry("blob", f"sha256:{i:064x}", i, f"b/{i}") for i in range(5))
    for data in (
        rows,
        rows[:2],
        [],
        {"delete": entries, "bytes": 10, "skipped": [{"path": "x", "reason": "y\n"}]},
        {"delete": (), "bytes": 0, "skipped": []},
        {1: "non-string keys"},
        "text",
        None,
    ):
        assert written(data) == json.dumps(output.plain(data))


def test_gc_entries_are_written_as_the_documented_rows():
    entry = GcEntry("link", "app@sha256:" + "a" * 64, 0, "docker/registry/v2/x")
    assert json.loads(written({"delete": (entry,)})) == {
        "delete": [{"kind": "link", "id": entry.id, "size": 0, "path": entry.path}]
    }
