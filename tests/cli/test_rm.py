"""`regtool rm` as users run it: plan, confirmation, JSON of what was removed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli import confirm
from regtool.cli.app import app
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
