"""Counting for progress displays: storage and ops tick, whoever installed a meter watches.

Nothing is shown from here (ops never print): the CLI installs a `Meter` while a long
command runs with stderr on a terminal, and renders what it counts. Without one every
tick is a global lookup and a comparison. `files` counts storage entries looked at (read,
listed, stat'd or removed), `data` bytes moved (hashed, imported, exported, migrated).
A meter must take ticks from threads and from forked worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol


class Meter(Protocol):
    def files(self, count: int) -> None:
        """`count` more storage entries looked at."""
        ...

    def data(self, size: int) -> None:
        """`size` more bytes moved."""
        ...

    def phase(self, name: str, total: int | None = None) -> None:
        """A new stage of the work (counts start again); `total`: the bytes it will move."""
        ...


_current: Meter | None = None


def files(count: int = 1) -> None:
    meter = _current
    if meter is not None:
        meter.files(count)


def data(size: int) -> None:
    meter = _current
    if meter is not None:
        meter.data(size)


def phase(name: str, total: int | None = None) -> None:
    meter = _current
    if meter is not None:
        meter.phase(name, total)


def current() -> Meter | None:
    """The installed meter (None: ticks go nowhere)."""
    return _current


@contextmanager
def installed(meter: Meter) -> Iterator[Meter]:
    """`meter` takes every tick while the block runs (forked workers inherit it)."""
    global _current
    previous, _current = _current, meter
    try:
        yield meter
    finally:
        _current = previous


class Counted:
    """A binary reader that ticks `data` with every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        data(len(chunk))
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        data(count or 0)
        return count or 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.raw, name)


def counted(raw: IO[bytes]) -> IO[bytes]:
    """`raw`, wrapped to tick `data` as it is read, when a meter is installed."""
    return Counted(raw) if _current is not None else raw  # type: ignore[return-value]
