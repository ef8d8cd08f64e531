"""Durations as users type them: `0`, `90s`, `30m`, `2h`, `1h30m`, `7d`, `2w`."""

from __future__ import annotations

import re

from regtool.errors import UsageError

_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])", re.ASCII)
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+", re.ASCII)
_UNIT = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, option: str = "--grace") -> float:
    """`0`, `90s`, `30m`, `2h`, `1h30m`, `7d`, `2w` (a bare number: seconds); UsageError
    otherwise."""
    value = text.strip().lower()
    if _NUMBER.fullmatch(value):
        return float(value)  # a bare number is seconds
    # one anchored match first: findall alone retries from every position (quadratic time)
    if not _DURATIONS.fullmatch(value):
        raise UsageError(
            f"{option} {text!r} is not a duration",
            hint="use a number with a unit: 0, 90s, 30m, 2h, 1h30m, 7d",
        )
    return sum(float(number) * _UNIT[unit] for number, unit in _DURATION.findall(value))
