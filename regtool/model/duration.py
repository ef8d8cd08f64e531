"""Durations as users type them: `0`, `90s`, `30m`, `2h`, `1h30m`, `7d`."""

from __future__ import annotations

import re

from regtool.errors import UsageError

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, option: str = "--grace") -> float:
    """`0`, `90s`, `30m`, `2h`, `1h30m`, `7d` (a bare number: seconds); UsageError otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)  # a bare number is seconds
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise UsageError(
            f"{option} {text!r} is not a duration",
            hint="use a number with a unit: 0, 90s, 30m, 2h, 1h30m, 7d",
        )
    return sum(float(number) * _UNIT[unit] for number, unit in parts)
