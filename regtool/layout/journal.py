"""The undo journal: what `rm` and `prune` removed, kept in the storage beside the layout.

One JSON document per run, `.regtool/journal/<time>-<command>.json` below the storage root
(a local folder, or the bucket's rootdirectory), outside `docker/`, `images/` and
`repositories/`, so registries never see it. Names sort by time: the last is the newest.

    {"version": 1, "command": "rm", "time": "2026-12-02T08:00:00.123456Z", "layout": "v2",
     "removed": [{"repository": "app", "tag": "v1", "digest": "sha256:..."},
                 {"repository": "app", "tag": null, "digest": "sha256:..."}]}

An entry with a tag is a removed tag and the digest it pointed at (v1: the image id); one
without is a removed manifest (its revision link). `restore` re-creates them. A v1 tag's
entry also keeps the text of the metadata files removed with it, `"tag_json"`
(`tag<t>_json`) and `"repository_json"` (the repository's `json`, removed with `latest`),
when they existed: keys present only then.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from regtool.errors import UsageError
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError

FOLDER = ".regtool/journal"
VERSION = 1
MAX_BYTES = 64 << 20  # a journal is read whole: bound it
_NAME = re.compile(r"\d{8}T\d{12}Z-[a-z]+\.json")
_COMMAND = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class Removed:
    repository: str
    tag: str | None  # None: a manifest (revision link) removed, not a tag
    digest: str | None  # the manifest the tag pointed at (v1: the image id); None if broken
    tag_json: str | None = None  # v1: the removed `tag<t>_json`, as text
    repository_json: str | None = None  # v1: the removed repository `json` (tag latest)


@dataclass(frozen=True, slots=True)
class Journal:
    name: str  # the file name below FOLDER
    command: str
    time: str  # ISO 8601, UTC
    layout: str
    removed: tuple[Removed, ...]


def path_of(name: str) -> str:
    return f"{FOLDER}/{name}"


def record(
    driver: StorageDriver,
    command: str,
    layout: str,
    removed: Sequence[Removed],
    *,
    now: datetime | None = None,
) -> Journal | None:
    """Write the journal of one run (None, nothing written, when it removed nothing).

    Call it before deleting: a run that dies half-way still leaves what it meant to remove.
    """
    if not removed:
        return None
    if not _COMMAND.fullmatch(command):
        raise ValueError(f"bad journal command name {command!r}")
    when = (now or datetime.now(UTC)).astimezone(UTC)
    name = f"{when:%Y%m%dT%H%M%S%f}Z-{command}.json"
    journal = Journal(
        name, command, when.isoformat().replace("+00:00", "Z"), layout, tuple(removed)
    )
    doc = {
        "version": VERSION,
        "command": journal.command,
        "time": journal.time,
        "layout": journal.layout,
        "removed": [_entry(r) for r in removed],
    }
    driver.put(path_of(name), json.dumps(doc, indent=1).encode() + b"\n")
    return journal


def names(driver: StorageDriver) -> list[str]:
    """Every journal's name, oldest first (files that are not journals are ignored)."""
    try:
        entries = driver.list(FOLDER)
    except PathNotFound:
        return []
    return sorted(e.name for e in entries if not e.is_dir and _NAME.fullmatch(e.name))


def last(driver: StorageDriver) -> Journal:
    found = names(driver)
    if not found:
        raise UsageError("no journal in this storage: nothing was removed by rm or prune")
    return read(driver, found[-1])


def read(driver: StorageDriver, name: str) -> Journal:
    """Parse one journal; UsageError (one line) when it is missing or not a journal."""
    name = name.rpartition("/")[2]
    if not _NAME.fullmatch(name):
        raise UsageError(f"{name} is not a journal name (expected <time>-<command>.json)")
    try:
        raw = driver.get(path_of(name), limit=MAX_BYTES)
    except PathNotFound:
        raise UsageError(f"no journal {name} in this storage") from None
    except StorageError as exc:
        raise UsageError(f"cannot read journal {name}: {exc.message}") from None
    try:
        doc = json.loads(raw)
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}")
        removed = tuple(
            Removed(
                _text(e["repository"]),
                _optional(e["tag"]),
                _optional(e["digest"]),
                _optional(e.get("tag_json")),
                _optional(e.get("repository_json")),
            )
            for e in doc["removed"]
        )
        return Journal(
            name, _text(doc["command"]), _text(doc["time"]), _text(doc["layout"]), removed
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"journal {name} is damaged: {exc}") from None


def _entry(removed: Removed) -> dict[str, str | None]:
    entry = {"repository": removed.repository, "tag": removed.tag, "digest": removed.digest}
    if removed.tag_json is not None:
        entry["tag_json"] = removed.tag_json
    if removed.repository_json is not None:
        entry["repository_json"] = removed.repository_json
    return entry


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional(value: object) -> str | None:
    return None if value is None else _text(value)
