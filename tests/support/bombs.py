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


# ru_maxrss of a child carries the peak of the process it was forked (or vforked) from
# across exec, and pytest's own process grows large; the child's own VmHWM does not.
_MEASURE = """
import atexit, runpy, sys
def _peak(path=sys.argv.pop(1)):
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(path, "w").write(line.split()[1])
atexit.register(_peak)
sys.argv[0] = "regtool"
runpy.run_module("regtool", run_name="__main__", alter_sys=True)
"""


def run_regtool_measured(*args: str, timeout: float = 600, stdin: Path | None = None) -> Measured:
    """`python -m regtool ARGS` in a subprocess, and its own peak RSS (VmHWM at exit).

    `stdin`: a file fed through a real pipe (`cat FILE | regtool ...`), so nothing can seek."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        feeder = None
        if stdin is not None:
            feeder = subprocess.Popen(["cat", str(stdin)], stdout=subprocess.PIPE)
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(peak), *args],
            stdin=feeder.stdout if feeder is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        if feeder is not None:
            assert feeder.stdout is not None
            feeder.stdout.close()
            feeder.wait(timeout)
        kib = int(peak.read_text()) if peak.exists() else 0
    return Measured(done.returncode, done.stdout, done.stderr, kib * 1024)
