"""regtool as users run it: a real process of this checkout, no terminal, stdin closed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.bombs import REPO_ROOT


def run_cli(
    *args: str, columns: int = 200, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m regtool ARGS` with this checkout first on the path and a terminal width
    of `columns` for the tables."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "regtool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
