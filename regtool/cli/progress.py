"""Progress on stderr for long commands, only when stderr is a terminal.

`shown(label)` wraps the work of a command: with stderr on a terminal (and TERM not
`dumb`) it installs a meter (regtool.storage.meter) that storage and ops tick, and draws
one transient rich line from it; otherwise it does nothing at all and rich is never
imported (start-up stays lean, logs get no carriage returns or escape codes). NO_COLOR
is honoured by rich: the line is drawn without colours.

Forked workers (gc, ls on big trees) inherit the meter: they send their counts to the
parent through a pipe, a few times a second, instead of drawing anything.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from regtool.model.units import human_size
from regtool.storage import meter

RECORD = struct.Struct("<qq")  # files, bytes: one pipe write, well below PIPE_BUF
FLUSH_EVERY = 0.2  # seconds between a worker's reports
RATE_WINDOW = 3.0  # seconds the rate is measured over
REFRESH_PER_SECOND = 8

_forked = False  # True in a process forked from the one that draws


def _in_child() -> None:
    global _forked
    _forked = True
    current = meter.current()
    if isinstance(current, LiveMeter):
        current._joined = False  # this worker reports its own counts, from zero


os.register_at_fork(after_in_child=_in_child)


def wanted() -> bool:
    """Progress is drawn only on a terminal that can redraw a line."""
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


@contextmanager
def shown(label: str, stage: str = "") -> Iterator[LiveMeter | None]:
    """A progress line for `label` (at `stage`) while the block runs (None: none drawn)."""
    if not wanted():
        yield None
        return
    live = LiveMeter(label, stage)
    with live, meter.installed(live):
        yield live


class LiveMeter:
    """Counts ticks (this process, its threads and forked children) and draws them."""

    def __init__(self, label: str, stage: str = "") -> None:
        self.label = label
        self.stage = stage
        self.total: int | None = None
        self._files = 0
        self._bytes = 0
        self._worker_files = 0
        self._worker_bytes = 0
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._rest = b""
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int, int]] = deque()
        # in a forked child: what is not yet sent, and when it was last sent
        self._pending = [0, 0]
        self._sent = 0.0
        self._joined = False
        self._progress: Any = None

    # -- ticks (regtool.storage.meter.Meter) -----------------------------------------
    def files(self, count: int) -> None:
        # the hot path (a tick per file): no lock; threads that tick files (an object
        # store's parallel GETs) could lose one only on a switch inside this +=
        if _forked:
            self._child(count, 0)
            return
        self._files += count

    def data(self, size: int) -> None:
        if _forked:
            self._child(0, size)
            return
        with self._lock:  # hashing threads tick a chunk at a time
            self._bytes += size

    def phase(self, name: str, total: int | None = None) -> None:
        self._drain()
        with self._lock:
            self.stage = name
            self.total = total
            self._files = self._bytes = self._worker_files = self._worker_bytes = 0
            self._started = time.monotonic()
            self._samples.clear()

    # verify's hasher (regtool.ops.verify.Progress)
    def start(self, total: int) -> None:
        self.phase("hashing", total)

    def advance(self, amount: int) -> None:
        self.data(amount)

    def _child(self, count: int, size: int) -> None:
        if not self._joined:  # the first tick in this worker
            self._joined = True
            self._pending = [0, 0]
            _at_worker_exit(self._send)
        pending = self._pending
        pending[0] += count
        pending[1] += size
        now = time.monotonic()
        if now - self._sent >= FLUSH_EVERY:
            self._sent = now
            self._send()

    def _send(self) -> None:
        pending = self._pending
        if pending == [0, 0]:
            return
        try:
            os.write(self._write, RECORD.pack(pending[0], pending[1]))
        except OSError:  # full or closed: keep the counts for the next report
            return
        pending[0] = pending[1] = 0

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._read, 1 << 16)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunk = self._rest + chunk
            whole = len(chunk) - len(chunk) % RECORD.size
            self._rest = chunk[whole:]
            with self._lock:  # the workers' counts: kept apart from this process's own
                for count, size in RECORD.iter_unpack(chunk[:whole]):
                    self._worker_files += count
                    self._worker_bytes += size

    # -- drawing ---------------------------------------------------------------------
    def text(self) -> str:
        """The counts part of the line: `12,345 files  8,100/s  0:00:02`, `1.2 GiB  80.0
        MiB/s  0:00:15`, or with a known total `45%  1.2 GiB of 2.7 GiB  80.0 MiB/s  0:00:18
        left`."""
        self._drain()
        now = time.monotonic()
        files, size, total = self.counted, self.done, self.total
        samples = self._samples
        samples.append((now, files, size))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()
        first_time, first_files, first_bytes = samples[0]
        if now - first_time < 0.5:  # too early for a window: since the stage began
            first_time, first_files, first_bytes = self._started, 0, 0
        span = max(now - first_time, 1e-3)
        if total is None and size == 0:
            rate = (files - first_files) / span
            return f"{files:,} files  {rate:,.0f}/s  {_clock(now - self._started)}"
        rate = (size - first_bytes) / span
        speed = f"{human_size(int(rate))}/s"
        if not total:
            return f"{human_size(size)}  {speed}  {_clock(now - self._started)}"
        percent = min(100, size * 100 // total)
        text = f"{percent:3d}%  {human_size(size)} of {human_size(total)}  {speed}"
        if rate > 0 and size < total:
            text += f"  {_clock((total - size) / rate)} left"
        return text

    @property
    def counted(self) -> int:
        """Files looked at so far in this stage (workers' reports included)."""
        return self._files + self._worker_files

    @property
    def done(self) -> int:
        """Bytes moved so far in this stage."""
        return self._bytes + self._worker_bytes

    def description(self) -> str:
        return f"{self.label}: {self.stage}" if self.stage else self.label

    def __enter__(self) -> LiveMeter:
        self._progress = _rich_progress(self)
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._progress.stop()
        finally:
            os.close(self._read)
            os.close(self._write)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _at_worker_exit(send: Callable[[], None]) -> None:
    """Run `send` when a multiprocessing worker ends (they skip atexit): the last counts."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, send, exitpriority=10)


def _rich_progress(live: LiveMeter) -> Any:
    """One transient line on stderr: a spinner, what runs, a bar when the total is known,
    the counts and rates; it fits the terminal's width (the bar gives way)."""
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    console = Console(stderr=True)

    class Line(ProgressColumn):
        def render(self, task: Task) -> Any:
            label, counts, total = live.description(), live.text(), live.total
            if not total:
                return Text(f"{label}  {counts}", no_wrap=True, overflow="ellipsis")
            room = console.width - len(label) - len(counts) - 6
            grid = Table.grid(padding=(0, 1))
            grid.add_row(
                Text(label, no_wrap=True),
                ProgressBar(
                    total=total, completed=min(live.done, total), width=max(5, min(40, room))
                ),
                Text(counts, no_wrap=True, overflow="ellipsis"),
            )
            return grid

    progress = Progress(
        SpinnerColumn(),
        Line(),
        console=console,
        transient=True,
        redirect_stdout=False,  # results on stdout are never touched
        redirect_stderr=True,  # warnings print above the line
        refresh_per_second=REFRESH_PER_SECOND,
    )
    progress.add_task(live.label, total=None)
    return progress
