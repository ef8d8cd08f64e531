"""Guards against exponential time: run a call in a forked child and give up on it early.

Python's `re` cannot be interrupted, so a runaway match would hang the test run; the child
is killed instead, and the test fails with how long it was given.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

BOUND = 0.5  # CPU seconds: far above any linear-time answer, far below an exponential one
GIVE_UP = 5.0  # seconds to wait for the child before killing it


def _timed(func: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    # the child's CPU time, not the wall clock: on a loaded machine (CI, parallel work) a
    # polynomial answer waits for a core long enough to look exponential
    started = time.process_time()
    try:
        result = func(*args)
    except Exception as exc:  # the answer may be an exception (a refusal)
        result = f"{type(exc).__name__}: {exc}"
    conn.send((time.process_time() - started, repr(result)[:200]))
    conn.close()


def seconds_taken(func: Callable[..., Any], *args: Any) -> float:
    """CPU seconds `func(*args)` took in a forked child; GIVE_UP when it had to be killed
    (after GIVE_UP seconds of wall clock)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_timed, args=(func, args, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(GIVE_UP):
            elapsed, _result = receiver.recv()
            return float(elapsed)
        return GIVE_UP
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
