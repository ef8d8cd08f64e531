"""`regtool rm` as users run it: plan, confirmation, JSON of what was removed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli import confirm
from regtool.cli.app import app
from regtool.cli.output import human_size
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.storage.lock import storage_lock
from tests.conftest import snapshot


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, ["rm", *args], input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def test_rm_yes_prints_what_was_removed_as_json(run, v2_root: Path, v2_expected):
    digest = v2_expected["manifests"]["busybox:latest"]["digest"]
    result = run("busybox", "--manifest", "--yes", "--root", str(v2_root), "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "delete": [
            {
                "kind": "tag",
                "id": "busybox:latest",
                "size": 0,
                "path": v2paths.tag_dir("busybox", "latest"),
            },
            {
                "kind": "manifest",
                "id": f"busybox@{digest}",
                "size": 0,
                "path": v2paths.revision_link("busybox", digest).rpartition("/")[0],
            },
        ],
        "bytes": 0,
    }
    assert not (v2_root / v2paths.tag_dir("busybox", "latest")).exists()
    assert "regtool gc" in result.stderr


def test_rm_dry_run_removes_nothing(run, v1_root: Path):
    before = snapshot(v1_root)
    result = run("busybox", "--dry-run", "--root", str(v1_root))
    assert result.exit_code == 0, result.output
    assert "tag_latest" in result.stdout and "would remove 3 entries" in result.stdout
    assert snapshot(v1_root) == before


def test_rm_without_yes_and_without_a_terminal_exits_2(run, v1_root: Path):
    result = run("busybox", "--root", str(v1_root))
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert (v1_root / v1paths.tag_file("library/busybox", "latest")).exists()


def test_rm_asks_on_a_terminal(run, v1_root: Path, monkeypatch):
    monkeypatch.setattr(confirm, "_is_terminal", lambda: True)
    result = run("library/centos:6.7", "--root", str(v1_root), input="y\n")
    assert result.exit_code == 0, result.output
    assert not (v1_root / v1paths.tag_file("library/centos", "6.7")).exists()
    assert (v1_root / v1paths.tag_file("library/centos", "httpd")).exists()


def test_rm_unknown_tag_is_a_usage_error_with_suggestions(run, v2_root: Path):
    result = run("centos:6.8", "--yes", "--root", str(v2_root))
    assert result.exit_code == 2
    assert "unknown tag" in result.stderr and "centos:6.7" in result.stderr


def test_rm_while_the_lock_is_held_exits_3(run, v2_root: Path):
    with storage_lock(v2_root, exclusive=True):
        result = run("busybox", "--yes", "--root", str(v2_root))
    assert result.exit_code == 3
    assert ".regtool.lock" in result.stderr


def age(root: Path, seconds: float) -> None:
    """Make every file of `root` as old as `seconds` (past gc's default grace)."""
    import os
    import time

    then = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (then, then), follow_symlinks=False)


def test_rm_ends_with_what_a_plain_gc_would_now_free(run, v2_root: Path):
    age(v2_root, 7200)
    result = run("centos:httpd", "--yes", "--root", str(v2_root))
    assert result.exit_code == 0, result.output
    gc = CliRunner().invoke(app, ["gc", "--dry-run", "--root", str(v2_root), "-f", "json"])
    freed = json.loads(gc.stdout)["bytes"]
    assert freed > 0
    assert f"regtool gc would now free {human_size(freed)}" in result.stderr
    assert "undo with: regtool restore --last" in result.stderr
    assert "regtool gc" not in result.stdout


def test_rm_glob_matching_nothing_exits_1_in_one_line(run, v2_root: Path):
    before = snapshot(v2_root)
    result = run("centos:pr-*", "--yes", "--root", str(v2_root))
    assert result.exit_code == 1
    assert result.stderr == "Error: no tag of centos matches 'pr-*': nothing removed\n"
    after = snapshot(v2_root)
    after.pop(".regtool.lock", None)  # the lock was taken: nothing else was written
    assert after == before


def test_rm_glob_removes_every_matching_tag(run, v2_root: Path):
    result = run("centos:*", "--yes", "--root", str(v2_root), "-f", "json")
    assert result.exit_code == 0, result.output
    tags = {e["id"] for e in json.loads(result.stdout)["delete"] if e["kind"] == "tag"}
    assert tags == {"centos:6.7", "centos:httpd"}


def test_rm_keep_manifest_removes_the_tag_only(run, v2_root: Path, v2_expected):
    digest = v2_expected["manifests"]["busybox:latest"]["digest"]
    result = run("busybox", "--keep-manifest", "--yes", "--root", str(v2_root), "-f", "json")
    assert result.exit_code == 0, result.output
    assert [e["kind"] for e in json.loads(result.stdout)["delete"]] == ["tag"]
    assert (v2_root / v2paths.revision_link("busybox", digest)).exists()


def test_rm_manifest_and_keep_manifest_together_is_a_usage_error(run, v2_root: Path):
    result = run("busybox", "--manifest", "--keep-manifest", "--yes", "--root", str(v2_root))
    assert result.exit_code == 2
    assert "contradict" in result.stderr


def test_rm_keep_manifest_is_accepted_on_v1(run, v1_root: Path):
    result = run("busybox", "--keep-manifest", "--yes", "--root", str(v1_root))
    assert result.exit_code == 0, result.output
    assert "regtool gc would now free" in result.stderr


def test_rm_of_fresh_data_says_gc_keeps_it_for_the_grace_window(run, v2_root: Path):
    age(v2_root, 0)
    result = run("centos:httpd", "--yes", "--root", str(v2_root))
    assert result.exit_code == 0, result.output
    assert "regtool gc would now free 0 B (0 blobs)" in result.stderr
    assert "regtool gc --grace 0 frees it now" in result.stderr
