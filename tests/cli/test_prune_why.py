"""`regtool prune` and `regtool why` as users run them: shapes, refusals, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli import confirm
from regtool.cli.app import app
from regtool.layout.store import open_storage
from regtool.ops.gc import GcOptions, plan_gc
from tests.conftest import snapshot
from tests.model.test_policy import BAD

POLICY = """\
policies:
  - repositories: ["centos", "busybox"]
    keep:
      - patterns: ["^http"]
      - patterns: [".*"]
        most_recent: 0
    allow_empty: true
"""


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(POLICY)
    return path


def test_dry_run_json_is_gc_shape_plus_keep(run, v2_root, policy):
    before = snapshot(v2_root)
    result = run(
        "prune",
        "--policy",
        str(policy),
        "--root",
        str(v2_root),
        "--dry-run",
        "--grace",
        "0",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"delete", "bytes", "keep", "skipped"}
    assert doc["keep"] == [{"id": "centos:httpd", "rule": "policy 1 keep 1: patterns ^http"}]
    kinds = {entry["kind"] for entry in doc["delete"]}
    assert {"tag", "manifest", "blob"} <= kinds
    assert doc["bytes"] == sum(entry["size"] for entry in doc["delete"])
    assert snapshot(v2_root) == before


def test_table_has_one_row_per_governed_repository_then_the_total(run, v2_root, policy):
    result = run("prune", "--policy", str(policy), "--root", str(v2_root), "--dry-run")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "REMOVED", "FREED", "KEPT", "KEPT", "SIZE"]
    assert [line.split()[0] for line in lines[2:4]] == ["busybox", "centos"]
    assert lines[-1].startswith("would remove 2 tags and ")


def test_without_terminal_or_yes_prune_refuses_and_touches_nothing(run, v2_root, policy):
    before = snapshot(v2_root)
    result = run("prune", "--policy", str(policy), "--root", str(v2_root), "--grace", "0")
    assert result.exit_code == 2
    assert "refused, no terminal" in result.stderr
    assert snapshot(v2_root) == before


def test_yes_prunes_and_a_following_gc_has_nothing_left(run, v2_root, policy, monkeypatch):
    monkeypatch.setattr(confirm, "_is_terminal", lambda: True)
    result = run(
        "prune", "--policy", str(policy), "--root", str(v2_root), "--grace", "0", input="y\n"
    )
    assert result.exit_code == 0, result.output
    assert "journal: .regtool/journal/" in result.stderr
    reader = open_storage(v2_root).reader
    assert [link.tag for link in reader.tags("centos")] == ["httpd"]
    assert plan_gc(reader, GcOptions(grace=0)).delete == ()


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_policy_exits_2_naming_the_line_and_touches_nothing(
    run, v2_root, tmp_path, text, line, words
):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    before = snapshot(v2_root)
    result = run("prune", "--policy", str(path), "--root", str(v2_root), "--yes")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: policy.yml:{line}: ")
    assert words in result.stderr
    assert snapshot(v2_root) == before


def test_a_policy_emptying_a_repository_exits_2_naming_the_policy_line(run, v2_root, tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text("policies:\n  - repositories: [busybox]\n    keep: []\n")
    before = snapshot(v2_root)
    result = run("prune", "--policy", str(path), "--root", str(v2_root), "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: policy.yml:2: policy 1 would remove every tag of")
    assert snapshot(v2_root) == before


# -- why -------------------------------------------------------------------------------------
def test_why_json_for_a_layer_lists_every_tag_that_needs_it(run, v2_expected):
    layer = v2_expected["manifests"]["centos:6.7"]["layers"][0]
    result = run("why", layer[7:19], "--root", "tests/fixtures/v2", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"object", "kind", "garbage", "kept_by"}
    assert doc["object"] == layer and doc["kind"] == "blob" and doc["garbage"] is False
    centos = next(k for k in doc["kept_by"] if k["tag"] == "centos:6.7")
    manifest = v2_expected["manifests"]["centos:6.7"]["digest"]
    assert centos == {
        "repository": "centos",
        "tag": "centos:6.7",
        "via": ["tag centos:6.7", f"manifest {manifest}", "layer"],
    }


def test_why_with_policy_names_the_rule_for_a_tag(run, policy):
    result = run(
        "why",
        "centos:httpd",
        "--policy",
        str(policy),
        "--root",
        "tests/fixtures/v2",
        "--format",
        "json",
    )
    doc = json.loads(result.stdout)
    assert doc["policy"] == {
        "tag": "centos:httpd",
        "verdict": "keep",
        "rule": "policy 1 keep 1: patterns ^http",
    }
    result = run(
        "why",
        "centos:6.7",
        "--policy",
        str(policy),
        "--root",
        "tests/fixtures/v2",
        "--format",
        "json",
    )
    assert json.loads(result.stdout)["policy"]["verdict"] == "remove"


def test_why_short_digest_none_exits_1_and_ambiguous_exits_2(run, tmp_path, v2_root):
    result = run("why", "0123456789ab", "--root", str(v2_root))
    assert result.exit_code == 1 and "no blob 0123456789ab" in result.stderr
    for name in ("abcdef0123456789" + "0" * 48, "abcdef0123456789" + "1" * 48):
        folder = v2_root / "docker/registry/v2/blobs/sha256/ab" / name
        folder.mkdir(parents=True)
        (folder / "data").write_bytes(b"x")
    result = run("why", "abcdef012345", "--root", str(v2_root))
    assert result.exit_code == 2 and "ambiguous" in result.stderr
    assert "sha256:abcdef0123456789000" in result.stderr
