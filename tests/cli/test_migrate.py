"""The migrate command: plan, --dry-run, confirmation rules, exit codes, summary."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout.v2 import paths as v2paths
from tests.support.bombs import (
    REPO_ROOT,
    run_regtool_measured,
    zeros_bzip2,
    zeros_digest,
    zeros_gzip,
)
from tests.support.smalldisk import assert_stopped_cleanly, inode_limits, small_tmpfs
from tests.support.v1tree import (
    V1_FIXTURE,
    compress,
    image_id,
    make_tar,
    snapshot,
    write_image,
    write_tag,
)

runner = CliRunner()


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1", symlinks=True))


def migrate(*args: str):
    return runner.invoke(app, ["migrate", *args])


def test_dry_run_prints_the_plan_and_writes_nothing(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    result = migrate("--from", str(v1_copy), "--to", str(dest), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "library/busybox:latest" in result.stdout and "busybox:latest" in result.stdout
    assert "6 tags in 5 repositories" in result.stdout
    assert not dest.exists()


def test_without_yes_and_without_a_terminal_it_refuses_with_exit_2(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    result = migrate("--from", str(v1_copy), "--to", str(dest))
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert not dest.exists()


def test_yes_migrates_and_prints_the_summary(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    result = migrate("--from", str(v1_copy), "--to", str(dest), "--yes")
    assert result.exit_code == 0, result.output
    assert "REPOSITORIES" in result.stdout and "SECONDS" in result.stdout
    listed = runner.invoke(app, ["ls", "--root", str(dest), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    names = {(row["repository"], row["tag"]) for row in json.loads(listed.stdout)}
    assert ("busybox", "latest") in names and ("gjkdhr/centos", "httpd") in names


def test_root_is_the_destination_when_to_is_missing(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    result = migrate("--from", str(v1_copy), "--root", str(dest), "--yes", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"] == 6


def test_a_skipped_chain_gives_exit_1_and_is_reported(v1_copy, tmp_path):
    orphan = image_id("child-of-nothing")
    write_image(v1_copy, orphan, image_id("missing"), b"\0" * 1024)
    write_tag(v1_copy, "library/broken", "latest", orphan)
    before = snapshot(v1_copy)
    result = migrate("--from", str(v1_copy), "--to", str(tmp_path / "v2"), "--yes")
    assert result.exit_code == 1
    assert "skipped library/broken:latest" in result.stderr
    assert snapshot(v1_copy) == before


def test_a_missing_source_is_an_operational_error(tmp_path):
    result = migrate("--from", str(tmp_path / "nope"), "--to", str(tmp_path / "v2"), "--yes")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: ")


def test_layers_that_expand_to_gigabytes_migrate_in_bounded_memory(tmp_path):
    """A v1 chain of a 2 GiB-of-zeros gzip layer and a 1 GiB-of-zeros bzip2 layer migrates
    (exit 0) with a peak RSS under 300 MB, however far the layers expand."""
    v1 = tmp_path / "v1"
    base, top = image_id("zeros-gzip"), image_id("zeros-bzip2")
    write_image(v1, base, None, zeros_gzip(2048))
    write_image(v1, top, base, zeros_bzip2(1024))
    write_tag(v1, "library/bombs", "latest", top)
    dest = tmp_path / "v2"
    run = run_regtool_measured("migrate", "--from", str(v1), "--to", str(dest), "--yes")
    assert run.returncode == 0, run.stderr
    assert run.peak_rss < 300 * 10**6, f"peak RSS {run.peak_rss / 10**6:.0f} MB"
    digest = (dest / v2paths.tag_current_link("bombs", "latest")).read_text()
    manifest = json.loads((dest / v2paths.blob_data(digest)).read_bytes())
    config = json.loads((dest / v2paths.blob_data(manifest["config"]["digest"])).read_bytes())
    assert config["rootfs"]["diff_ids"] == [zeros_digest(2048), zeros_digest(1024)]


def test_a_fifo_in_place_of_a_layer_or_json_is_skipped_not_opened(v1_copy, tmp_path):
    """Opening a FIFO blocks until a writer comes: migrate must not open one at all."""
    for name in ("layer", "json"):
        ident = image_id(f"fifo-{name}")
        write_image(v1_copy, ident, None, b"\0" * 1024)
        (v1_copy / "images" / ident / name).unlink()
        os.mkfifo(v1_copy / "images" / ident / name)
        write_tag(v1_copy, f"fifo/{name}", "latest", ident)
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "migrate", "--from", str(v1_copy)]
        + ["--to", str(tmp_path / "v2"), "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert done.returncode == 1, done.stderr
    for name in ("layer", "json"):
        assert f"skipped fifo/{name}:latest: " in done.stderr
        assert f"/{name} is not a regular file" in done.stderr
    assert (tmp_path / "v2" / v2paths.tag_current_link("busybox", "latest")).exists()


@pytest.mark.parametrize("kind", ["gzip", "tar"])  # copied as it is / recompressed via _uploads
def test_migrate_into_a_full_disk_exits_3_writes_no_tag_and_a_rerun_finishes(tmp_path, kind):
    v1 = tmp_path / "v1"
    small = image_id("small")
    write_image(v1, small, None, compress(make_tar({"a": b"a" * 1000}), "gzip"))
    write_tag(v1, "library/a", "latest", small)
    big = image_id("big")
    noise = random.Random(kind).randbytes(6_000_000)
    write_image(v1, big, small, compress(make_tar({"noise": noise}), kind))
    write_tag(v1, "library/b", "latest", big)
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        dest = disk / "v2"
        result = migrate("--from", str(v1), "--to", str(dest), "--yes")
        assert result.exit_code == 3, result.output
        first, hint = result.stderr.splitlines()
        assert first.startswith(f"Error: migrate stopped: no space left on device in {dest}; ")
        assert first.endswith(", no tag written")
        assert hint.startswith("Hint: free some space and run migrate again")
        assert not list(dest.rglob("current"))
        assert [str(p) for p in dest.rglob("*.tmp")] == []
        assert [str(p) for p in dest.rglob("*") if p.is_dir() and not any(p.iterdir())] == []
        subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True, timeout=30)
        again = migrate("--from", str(v1), "--to", str(dest), "--yes", "-f", "json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["tags"] == 2


def test_a_migrate_failing_at_any_write_leaves_a_sound_storage(tmp_path):
    """One more file or folder fits each run, so migrate fails at each of its writes in turn
    (layers copied or recompressed, configs, links, manifests, tags) until it fits: every
    time exit 3 with one error line, no temp file, no empty folder, verify finds it sound."""
    v1 = tmp_path / "v1"
    base, top = image_id("base"), image_id("top")
    write_image(v1, base, None, compress(make_tar({"a": b"a" * 5000}), "gzip"))
    write_image(v1, top, base, compress(make_tar({"b": b"b" * 5000}), "tar"))
    write_tag(v1, "library/a", "latest", base)
    write_tag(v1, "library/b", "latest", top)
    outcomes = []
    for limit, disk in inode_limits(tmp_path / "disk", 6, 200):
        dest = disk / "v2"
        (dest / "docker" / "registry" / "v2").mkdir(parents=True)
        skeleton = frozenset({dest / "docker" / "registry" / "v2"})
        result = migrate("--from", str(v1), "--to", str(dest), "--yes")
        outcomes.append(result.exit_code)
        assert_stopped_cleanly(result, dest, skeleton, limit)
        if result.exit_code == 0:
            break
    assert outcomes[-1] == 0 and outcomes.count(3) > 20, outcomes


def test_moved_tags_show_in_the_plan_and_no_overwrite_keeps_them(v1_copy, tmp_path):
    """Through a real process: a second migration (OCI this time) onto the same tags."""
    dest = str(tmp_path / "v2")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}

    def migrate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "regtool", "migrate", "--from", str(v1_copy), "--to", dest]
            + list(args),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )

    assert migrate("--yes").returncode == 0
    plan = migrate("--oci", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if line.startswith("library/centos:6.7"))
    assert row.split()[1] == "centos:6.7"
    assert row.endswith("tag exists (df09de921e25): replaced if it differs")
    assert plan.stdout.rstrip().endswith("6 tag(s) exist (replaced)")
    kept = migrate("--oci", "--yes", "--no-overwrite")
    assert kept.returncode == 1
    assert "kept centos:6.7 at df09de921e25 (not moved to " in kept.stdout
    assert kept.stderr.startswith("warning: --no-overwrite kept 6 tag(s) naming another image: ")
    moved = migrate("--oci", "--yes", "-f", "json")
    assert moved.returncode == 0, moved.stderr
    tags = {
        t["tag"]: t for t in json.loads(moved.stdout)["migrated"] if t["repository"] == "centos"
    }
    assert tags["6.7"]["status"] == "replaced"
    assert tags["6.7"]["previous"].startswith("sha256:df09de921e25")
