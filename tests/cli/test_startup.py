"""What a command loads at start-up (real processes, `python -X importtime`): only what the
command being run needs on its path, so every run starts fast."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.bombs import REPO_ROOT


def loaded(*args: str) -> set[str]:
    """The modules `regtool ARGS` imports, from -X importtime's report on stderr."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "regtool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_verify_of_a_v2_tree_loads_neither_v1_code_nor_tar_nor_rich(v2_root):
    modules = loaded("verify", "--root", str(v2_root), "--format", "json", "--jobs", "1")
    assert "regtool.ops.verify_v2" in modules  # the report is of the right process
    for unneeded in (
        "regtool.layout.v1.reader",
        "regtool.ops.verify_v1",
        "regtool.model.tarsum",
        "tarfile",
        "rich",
        "yaml",
        "tabulate",
    ):
        assert unneeded not in modules, unneeded


def test_version_and_a_command_help_load_no_storage_code():
    for args in (["--version"], ["verify", "--help"]):
        modules = loaded(*args)
        assert "regtool.layout.store" not in modules, args
        assert "regtool.layout.reader" not in modules, args
