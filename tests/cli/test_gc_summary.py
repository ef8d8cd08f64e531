"""`gc --summary` and `prune --summary` through real processes: one line per repository."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from regtool.cli.entry_summary import repository_of
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcEntry
from tests.support.process import run_cli

ORPHAN = b"an orphan blob for the summary"
ORPHAN_DIGEST = "sha256:" + hashlib.sha256(ORPHAN).hexdigest()
POLICY = """\
policies:
  - repositories: ["centos", "busybox"]
    keep:
      - patterns: ["^httpd$"]
    allow_empty: true
"""


def regtool(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, columns=200)


def table(stdout: str) -> list[list[str]]:
    """The rows of a `simple` grid (header and rule dropped), split on runs of spaces."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "ENTRIES", "SIZE"], stdout
    return [line.split("  ") for line in lines[2:-1]]


def cells(rows: list[list[str]]) -> list[list[str]]:
    return [[cell.strip() for cell in row if cell.strip()] for row in rows]


@pytest.fixture
def v2(v2_root: Path) -> Path:
    data = v2_root / v2paths.blob_data(ORPHAN_DIGEST)
    data.parent.mkdir(parents=True)
    data.write_bytes(ORPHAN)
    return v2_root


def test_gc_summary_dry_run_has_a_line_per_repository_then_blobs_then_the_total(v2):
    done = regtool("gc", "--root", str(v2), "-n", "--grace", "0", "-m", "--summary")
    assert done.returncode == 0, done.stderr
    rows = cells(table(done.stdout))
    assert rows == [["busybox", "4", "0 B"], ["(blobs)", "4", "1.4 KiB"]]
    assert done.stdout.splitlines()[-1] == "would delete 8 entries, 1.4 KiB"
    assert "KIND" not in done.stdout and "docker/registry" not in done.stdout


def test_gc_summary_of_the_applied_run_reports_what_was_deleted(v2):
    done = regtool("gc", "--root", str(v2), "--yes", "--grace", "0", "-m", "-s")
    assert done.returncode == 0, done.stderr
    assert cells(table(done.stdout)) == [["busybox", "4", "0 B"], ["(blobs)", "4", "1.4 KiB"]]
    assert done.stdout.splitlines()[-1] == "deleted 8 entries, 1.4 KiB"
    assert not (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()


def test_gc_summary_leaves_json_unchanged(v2):
    plain = regtool("gc", "--root", str(v2), "-n", "--grace", "0", "-f", "json")
    summed = regtool("gc", "--root", str(v2), "-n", "--grace", "0", "-f", "json", "--summary")
    assert summed.returncode == plain.returncode == 0
    assert json.loads(summed.stdout) == json.loads(plain.stdout)
    assert len(json.loads(summed.stdout)["delete"]) == 1


def test_gc_summary_on_v1_counts_image_folders_on_their_own_line(v1_root):
    done = regtool("gc", "--root", str(v1_root), "-n", "--grace", "0", "--summary")
    assert done.returncode == 0, done.stderr
    assert cells(table(done.stdout)) == [["(images)", "2", "4.1 KiB"]]


def test_gc_summary_with_nothing_to_delete_says_so(v2_root):
    done = regtool("gc", "--root", str(v2_root), "-n", "--grace", "0", "--summary")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nothing to delete")


def test_prune_summary_dry_run_and_applied_run_group_by_repository(v2_root, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    args = ("prune", "--root", str(v2_root), "-p", str(policy), "--grace", "0", "--summary")
    planned = regtool(*args, "-n")
    assert planned.returncode == 0, planned.stderr
    expected = [["busybox", "3", "0 B"], ["centos", "3", "0 B"], ["(blobs)", "4", "3.2 KiB"]]
    assert cells(table(planned.stdout)) == expected
    assert planned.stdout.splitlines()[-1].endswith("10 entries, 3.2 KiB freed")
    applied = regtool(*args, "--yes")
    assert applied.returncode == 0, applied.stderr
    assert cells(table(applied.stdout)) == expected
    assert applied.stdout.splitlines()[-1].startswith("removed 2 tags")


@pytest.mark.parametrize(
    ("entry", "repository"),
    [
        (GcEntry("blob", ORPHAN_DIGEST, 1, v2paths.blob_dir(ORPHAN_DIGEST)), None),
        (GcEntry("upload", "u", 9, v2paths.upload_dir("team/app", "u")), "team/app"),
        (GcEntry("temp", "data.1.tmp", 9, v2paths.uploads_dir("a/b") + "/x/data.1.tmp"), "a/b"),
        (GcEntry("repository", "team/app", 0, v2paths.repository("team/app")), "team/app"),
        (
            GcEntry("tag", "library/ubuntu:latest", 0, "repositories/library/ubuntu/tag_latest"),
            "library/ubuntu",
        ),
        (GcEntry("image", "ab" * 32, 5, "images/" + "ab" * 32), None),
    ],
)
def test_repository_of_each_kind_of_entry(entry, repository):
    assert repository_of(entry) == repository
