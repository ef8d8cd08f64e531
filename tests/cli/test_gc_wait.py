"""`regtool gc --wait` beside real processes holding the storage lock, and what a refusal
without --wait names as the holder (a writer's shared lock, or gc/rm's exclusive one)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regtool.layout.v2 import paths as v2paths

REPO_ROOT = Path(__file__).resolve().parents[2]
ORPHAN = b"an orphan blob beside a held lock"
ORPHAN_DIGEST = "sha256:" + hashlib.sha256(ORPHAN).hexdigest()
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
HOLD = """
import sys
from pathlib import Path
from regtool.storage.lock import storage_lock
with storage_lock(Path(sys.argv[1]), exclusive=sys.argv[2] == "ex", holder="regtool rm"):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def v2(v2_root: Path) -> Path:
    data = v2_root / v2paths.blob_data(ORPHAN_DIGEST)
    data.parent.mkdir(parents=True)
    data.write_bytes(ORPHAN)
    return v2_root


@contextmanager
def holding(root: Path, kind: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the storage lock (`ex` or `sh`) until the context ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=10)


def gc(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "regtool",
            "gc",
            "--root",
            str(root),
            "--yes",
            "--grace",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_gc_without_wait_names_the_exclusive_holder_and_its_pid(v2: Path) -> None:
    with holding(v2, "ex") as holder:
        out, err = gc(v2).communicate(timeout=30)
    assert f"regtool rm, pid {holder.pid} holds the storage lock" in err
    assert "--wait" in err and "Traceback" not in err
    assert (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()


def test_gc_without_wait_says_a_writer_holds_the_lock_shared(v2: Path) -> None:
    with holding(v2, "sh"):
        proc = gc(v2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "held shared by a writer (a running regtool serve committing a push" in err
    assert (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()


@pytest.mark.parametrize("kind", ["ex", "sh"])
def test_gc_wait_waits_for_the_holder_then_sweeps(v2: Path, kind: str) -> None:
    with holding(v2, kind) as holder:
        proc = gc(v2, "--wait", "20s")
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # still waiting while the lock is held
        assert holder.stdin is not None
        holder.stdin.close()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "deleted 1 entry" in out
    assert not (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()


def test_gc_wait_gives_up_after_its_duration_naming_the_holder(v2: Path) -> None:
    with holding(v2, "ex") as holder:
        proc = gc(v2, "--wait", "1s")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert f"regtool rm, pid {holder.pid}" in err


def test_gc_wait_rejects_a_malformed_duration(v2: Path) -> None:
    proc = gc(v2, "--wait", "soon")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--wait 'soon' is not a duration" in err
