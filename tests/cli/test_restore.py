"""`regtool restore` as users run it: plan, confirmation, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli import confirm
from regtool.cli.app import app
from regtool.layout.v2 import paths as v2paths
from tests.conftest import snapshot


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def test_rm_then_restore_last_brings_the_tag_back(run, v2_root: Path, v2_expected):
    ls = run("ls", "--root", str(v2_root), "-f", "json").stdout
    assert run("rm", "centos6", "--yes", "--root", str(v2_root)).exit_code == 0
    result = run("restore", "--last", "--yes", "--root", str(v2_root), "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    digest = v2_expected["manifests"]["centos6:latest"]["digest"]
    assert doc["restore"] == [
        {"kind": "manifest", "id": f"centos6@{digest}", "digest": digest},
        {"kind": "tag", "id": "centos6:latest", "digest": digest},
    ]
    assert doc["lost"] == [] and doc["drift"] == [] and doc["journal"].endswith("-rm.json")
    assert run("ls", "--root", str(v2_root), "-f", "json").stdout == ls


def test_restore_after_gc_lists_the_lost_and_exits_1(run, v2_root: Path):
    run("rm", "centos:httpd", "--yes", "--root", str(v2_root))
    run("gc", "--grace", "0", "--yes", "--root", str(v2_root))
    result = run("restore", "--last", "--yes", "--root", str(v2_root))
    assert result.exit_code == 1
    assert "lost" in result.stdout and "was swept by gc" in result.stdout
    assert "restored 0 entries" in result.stdout


def test_restore_dry_run_writes_nothing(run, v2_root: Path):
    run("rm", "busybox", "--yes", "--root", str(v2_root))
    before = snapshot(v2_root)
    result = run("restore", "--last", "--dry-run", "--root", str(v2_root))
    assert result.exit_code == 0, result.output
    assert "would restore 2 entries" in result.stdout
    assert snapshot(v2_root) == before


def test_restore_without_yes_and_without_a_terminal_exits_2(run, v2_root: Path):
    run("rm", "busybox", "--yes", "--root", str(v2_root))
    result = run("restore", "--last", "--root", str(v2_root))
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert not (v2_root / v2paths.tag_dir("busybox", "latest")).exists()


def test_restore_asks_on_a_terminal(run, v2_root: Path, monkeypatch):
    rm = run("rm", "busybox", "--yes", "--root", str(v2_root))
    name = rm.stderr.split("(journal ")[1].split(")")[0]
    monkeypatch.setattr(confirm, "_is_terminal", lambda: True)
    result = run("restore", name, "--root", str(v2_root), input="y\n")
    assert result.exit_code == 0, result.output
    assert (v2_root / v2paths.tag_current_link("busybox", "latest")).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --last or a journal FILE"),
        (("x.json", "--last"), "not both"),
        (("--last",), "no journal in this storage"),
        (("../x.json",), "not a journal name"),
    ],
)
def test_restore_bad_arguments_exit_2(run, v2_root: Path, args, message):
    result = run("restore", *args, "--yes", "--root", str(v2_root))
    assert result.exit_code == 2
    assert message in result.stderr
