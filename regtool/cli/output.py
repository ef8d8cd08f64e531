"""The one place that writes results: table (tabulate), json or yaml on stdout; notes on stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from regtool.model.digest import short
from regtool.model.units import human_size as human_size  # re-exported: the CLI's name


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


_FIELDS: dict[type, tuple[str, ...]] = {}


_SCALARS = (str, int, float, bool, type(None))


def plain(obj: Any) -> Any:
    """Dataclasses to dicts, tuples to lists: data json/yaml can write (fast, no deepcopy)."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj  # most of a big document: answered before the costlier checks
    if kind is dict:
        return {key: plain(value) for key, value in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS.get(type(obj))
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(obj))
            _FIELDS[type(obj)] = names
        return {name: plain(getattr(obj, name)) for name in names}
    if isinstance(obj, list | tuple):
        return [plain(item) for item in obj]
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    return obj


def write_json(data: Any, write: Callable[[str], object]) -> None:
    """`json.dumps(plain(data))`, byte for byte, written a piece at a time: the rows of a
    big listing (every tag, a gc plan) are never all held as dicts, nor as one string."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        names = _FIELDS.get(type(data))
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(data))
            _FIELDS[type(data)] = names
        data = {name: getattr(data, name) for name in names}
    if isinstance(data, dict) and all(type(key) is str for key in data):
        write("{")
        for i, (key, value) in enumerate(data.items()):
            write(f"{', ' if i else ''}{json.dumps(key)}: ")
            write_json(value, write)
        write("}")
    elif isinstance(data, list | tuple) and len(data) > _STREAM_BATCH:
        write("[")
        for start in range(0, len(data), _STREAM_BATCH):
            batch = [plain(item) for item in data[start : start + _STREAM_BATCH]]
            write((", " if start else "") + json.dumps(batch)[1:-1])
        write("]")
    else:
        write(json.dumps(plain(data)))


_STREAM_BATCH = 2048


def emit(data: Any, fmt: Format, table: Callable[[], str]) -> None:
    """Write `data` in the chosen format; `table` renders the human view."""
    if fmt is Format.json:
        # The C encoder is only used without indent: pretty on a terminal, compact in pipes.
        if sys.stdout.isatty():
            sys.stdout.write(json.dumps(plain(data), indent=2) + "\n")
        else:
            write_json(data, sys.stdout.write)
            sys.stdout.write("\n")
    elif fmt is Format.yaml:
        import yaml  # imported when used: start-up time is part of every command's time

        sys.stdout.write(yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True))
    else:
        text = table()
        if text:
            sys.stdout.write(text + "\n")


def grid(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    from tabulate import tabulate  # imported when used, like yaml

    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True)


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 entry`, `2 entries`: a number and its noun, in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def entries(n: int) -> str:
    return count(n, "entry", "entries")


def short_id(ident: str | None) -> str:
    return short(ident) if ident else "-"


def short_time(stamp: str | None) -> str:
    """`2015-10-20T12:01:02.123Z` as `2015-10-20 12:01`."""
    if not stamp:
        return "-"
    return stamp[:16].replace("T", " ")


def clip(text: str | None, width: int) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
