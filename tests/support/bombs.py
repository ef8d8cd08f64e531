"""Compression bombs built on the fly (zeros streamed into a compressor), and a way to run a
command and learn its peak resident memory."""

from __future__ import annotations

import bz2
import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from isal import isal_zlib

MIB = 1 << 20
_ZEROS = bytes(MIB)
REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def zeros_bzip2(mib: int) -> bytes:
    """bzip2 of `mib` MiB of zeros: one stream, under a kilobyte for 1 GiB."""
    engine = bz2.BZ2Compressor(9)
    out = [engine.compress(_ZEROS) for _ in range(mib)]
    return b"".join(out) + engine.flush()


@functools.cache
def zeros_gzip(mib: int) -> bytes:
    """gzip of `mib` MiB of zeros: one member, about 1 MiB per GiB."""
    engine = isal_zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [engine.compress(_ZEROS) for _ in range(mib)]
    return b"".join(out) + engine.flush()


@functools.cache
def zeros_digest(mib: int) -> str:
    digest = hashlib.sha256()
    for _ in range(mib):
        digest.update(_ZEROS)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes


def run_regtool_measured(*args: str, timeout: float = 600) -> Measured:
    """`python -m regtool ARGS` in a subprocess, and its own peak RSS (wait4's rusage)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "regtool", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read(), err.read(), usage.ru_maxrss * 1024)
