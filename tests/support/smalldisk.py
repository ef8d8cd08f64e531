"""A small tmpfs mounted for one test, to run commands into a full disk (ENOSPC)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def small_tmpfs(path: Path, size: str = "4m", inodes: int | None = None) -> Iterator[Path]:
    """Mount a tmpfs of `size` (and at most `inodes` files and folders) at `path`; root only,
    skipped elsewhere; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    limit = f",nr_inodes={inodes}" if inodes else ""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755{limit}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        gc.collect()  # drivers of in-process commands hold the root open until collected
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:  # a driver the test still holds: detach it now, freed later
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def inode_limits(path: Path, start: int, stop: int) -> Iterator[tuple[int, Path]]:
    """A tmpfs at `path` that holds `start` files and folders, then one more each time, up
    to `stop`: every write of a command run on it fails once with ENOSPC, one after the
    other. Leaving the loop unmounts it."""
    for limit in range(start, stop):
        with small_tmpfs(path, "16m", inodes=limit) as disk:
            yield limit, disk


def leftovers(root: Path, allowed: frozenset[Path] = frozenset()) -> list[str]:
    """Temp files and empty folders below root (other than `allowed`)."""
    found = [str(p) for p in root.rglob("*.tmp")]
    empty = [p for p in root.rglob("*") if p.is_dir() and not any(p.iterdir())]
    return found + [str(p) for p in empty if p not in allowed]


def assert_stopped_cleanly(result: Any, root: Path, skeleton: frozenset[Path], limit: int) -> None:
    """A command run on a disk that filled up (`result` of typer's CliRunner): it worked or
    said so in one line (exit 3), left no temp file or empty folder, and what it did write
    verifies clean."""
    from typer.testing import CliRunner

    from regtool.cli.app import app

    assert result.exit_code in (0, 3), (limit, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 3:
        assert result.stderr.startswith("Error: "), (limit, result.stderr)
        assert len(result.stderr.splitlines()) <= 2, (limit, result.stderr)
    assert leftovers(root, skeleton) == [], (limit, result.stderr)
    checked = CliRunner().invoke(app, ["verify", "--root", str(root), "-f", "json"])
    assert json.loads(checked.stdout)["problems"] == [], (limit, result.stderr)
