"""`regtool gc` as users run it: plan shapes, confirmation, refusal, lock, exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli import confirm
from regtool.cli.app import app
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.storage.lock import storage_lock

ORPHAN = b"an orphan blob"
ORPHAN_DIGEST = "sha256:" + hashlib.sha256(ORPHAN).hexdigest()


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, ["gc", *args], input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def v2(v2_root: Path) -> Path:
    data = v2_root / v2paths.blob_data(ORPHAN_DIGEST)
    data.parent.mkdir(parents=True)
    data.write_bytes(ORPHAN)
    return v2_root


def test_gc_dry_run_prints_the_plan_as_json_and_writes_nothing(run, v2, place_of):
    place = place_of(v2)
    before = place.contents()
    result = run(*place.args, "--dry-run", "--grace", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == {
        "delete": [
            {
                "kind": "blob",
                "id": ORPHAN_DIGEST,
                "size": len(ORPHAN),
                "path": v2paths.blob_dir(ORPHAN_DIGEST),
            }
        ],
        "bytes": len(ORPHAN),
        "skipped": [],
    }
    assert place.contents() == before
    assert not (v2 / ".regtool.lock").exists()


def test_gc_dry_run_table_shows_kind_size_and_total(run, v2, place_of):
    result = run(*place_of(v2).args, "--dry-run", "--grace", "0")
    assert result.exit_code == 0
    assert "blob" in result.stdout and "would delete 1 entry, 14 B" in result.stdout


def test_gc_without_yes_and_without_a_terminal_refuses_with_exit_2(run, v2, place_of):
    place = place_of(v2)
    result = run(*place.args, "--grace", "0")
    assert result.exit_code == 2
    assert "no terminal" in result.stderr and "--yes" in result.stderr
    assert place.has(v2paths.blob_data(ORPHAN_DIGEST))


def test_gc_asks_on_a_terminal_and_deletes_on_yes(run, v2, monkeypatch, place_of):
    monkeypatch.setattr(confirm, "_is_terminal", lambda: True)
    place = place_of(v2)
    result = run(*place.args, "--grace", "0", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Delete 1 entry (14 B)?" in result.stderr
    assert not place.has(v2paths.blob_data(ORPHAN_DIGEST))
    assert "deleted 1 entry" in result.stdout


def test_gc_asks_on_a_terminal_and_keeps_everything_on_no(run, v2, monkeypatch, place_of):
    monkeypatch.setattr(confirm, "_is_terminal", lambda: True)
    place = place_of(v2)
    before = place.contents()
    result = run(*place.args, "--grace", "0", input="n\n")
    assert result.exit_code == 1
    assert place.contents() == before


def test_gc_yes_deletes_and_prints_what_it_deleted_in_the_plan_shape(run, v2, place_of):
    place = place_of(v2)
    planned = json.loads(run(*place.args, "-n", "--grace", "0", "-f", "json").stdout)
    result = run(*place.args, "--yes", "--grace", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == planned
    assert not place.has(v2paths.blob_data(ORPHAN_DIGEST))
    again = run(*place.args, "-n", "--grace", "0", "-f", "json")
    assert json.loads(again.stdout) == {"delete": [], "bytes": 0, "skipped": []}


def test_gc_default_grace_keeps_a_blob_written_just_now(run, v2, place_of):
    result = run(*place_of(v2).args, "--dry-run", "--format", "json")
    assert json.loads(result.stdout)["delete"] == []


def test_a_second_gc_while_the_first_holds_the_lock_exits_3(run, v2):
    with storage_lock(v2, exclusive=True):
        result = run("--root", str(v2), "--yes", "--grace", "0")
    assert result.exit_code == 3
    assert ".regtool.lock" in result.stderr and "Error:" in result.stderr
    assert (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()


def test_gc_dry_run_works_while_the_lock_is_held(run, v2):
    with storage_lock(v2, exclusive=True):
        result = run("--root", str(v2), "--dry-run", "--grace", "0")
    assert result.exit_code == 0


def test_gc_refuses_with_exit_1_naming_an_unreadable_manifest(run, v2, v2_expected, place_of):
    digest = v2_expected["manifests"]["busybox:latest"]["digest"]
    (v2 / v2paths.blob_data(digest)).write_bytes(b"{")
    place = place_of(v2)
    result = run(*place.args, "--yes", "--grace", "0")
    assert result.exit_code == 1
    assert v2paths.blob_data(digest) in result.stderr
    assert "deleted nothing" in result.stderr
    assert place.has(v2paths.blob_data(ORPHAN_DIGEST))
    forced = run(*place.args, "--yes", "--grace", "0", "--force")
    assert forced.exit_code == 0, forced.output
    assert not place.has(v2paths.blob_data(ORPHAN_DIGEST))


def test_gc_bad_link_never_crashes(run, v2, place_of):
    link = v2 / v2paths.tag_current_link("busybox", "latest")
    link.write_bytes(b"\xff\xfe")
    result = run(*place_of(v2).args, "--dry-run", "--grace", "0")
    assert result.exit_code == 1
    assert "malformed tag link" in result.stderr


def test_gc_notes_the_restart_for_an_inmemory_blob_descriptor_cache(run, v2, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  cache:\n    blobdescriptor: inmemory\n"
        f"  filesystem:\n    rootdirectory: {v2}\n"
    )
    result = run("--config", str(config), "--yes", "--grace", "0")
    assert result.exit_code == 0, result.output
    assert "blobdescriptor: inmemory" in result.stderr and "restart" in result.stderr


@pytest.mark.parametrize("option", ["--grace", "--upload-age"])
def test_gc_bad_duration_is_a_usage_error(run, v2, option):
    result = run("--root", str(v2), "--dry-run", option, "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


def test_gc_on_v1_sweeps_unreachable_images(run, v1_root, v1_expected):
    result = run("--root", str(v1_root), "--yes", "--grace", "0", "-f", "json")
    assert result.exit_code == 0, result.output
    ids = {entry["id"] for entry in json.loads(result.stdout)["delete"]}
    assert ids == {*v1_expected["orphans"], *v1_expected["in_progress"]}
    for image in ids:
        assert not (v1_root / v1paths.image_dir(image)).exists()


def test_gc_on_a_missing_root_exits_3(run, tmp_path):
    result = run("--root", str(tmp_path / "nothing"), "--dry-run")
    assert result.exit_code == 3


# -- links in the tree -----------------------------------------------------------------------
def test_gc_lists_a_link_it_leaves_alone_in_json_and_warns_about_it(run, v2):
    (v2 / v2paths.repository("loop")).symlink_to("..")
    result = run("--root", str(v2), "--yes", "--grace", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [e["id"] for e in doc["delete"]] == [ORPHAN_DIGEST]
    assert [s["path"] for s in doc["skipped"]] == [v2paths.repository("loop")]
    assert "symbolic link" in doc["skipped"][0]["reason"]
    assert f"warning: {v2paths.repository('loop')}: a symbolic link" in result.stderr
    assert (v2 / v2paths.repository("loop")).is_symlink()
    table = run("--root", str(v2), "--dry-run", "--grace", "0")
    assert "left 1 unrecognised objects alone (see warnings)" in table.stdout


def test_gc_refuses_a_link_to_outside_where_tags_live_unless_forced(run, v2, tmp_path):
    outside = tmp_path / "outside"
    (outside / "_layers").mkdir(parents=True)
    (outside / "_manifests").mkdir()
    (outside / "_manifests" / "keep").write_text("not the registry's")
    (v2 / v2paths.repository("elsewhere")).symlink_to(outside)
    refused = run("--root", str(v2), "--yes", "--grace", "0")
    assert refused.exit_code == 1
    assert "may serve images through it" in refused.stderr
    assert "Hint: repair or remove the named files" in refused.stderr
    assert (v2 / v2paths.blob_data(ORPHAN_DIGEST)).exists()
    forced = run("--root", str(v2), "--yes", "--grace", "0", "--force", "-f", "json")
    assert forced.exit_code == 0, forced.output
    doc = json.loads(forced.stdout)
    assert [e["id"] for e in doc["delete"]] == [ORPHAN_DIGEST]
    assert [s["path"] for s in doc["skipped"]] == [v2paths.repository("elsewhere")]
    assert (outside / "_manifests" / "keep").exists()


def test_gc_purges_the_uploads_of_a_push_or_import_that_died_before_its_first_link(
    run, v2, place_of
):
    # a killed `import -` or a first push that never finished: the folder has no _layers
    # and no _manifests, so it is no repository, but its upload holds the bytes sent
    upload = v2paths.upload_dir("ghost/app", "0a1b2c3d-0000-4000-8000-000000000001")
    (v2 / upload).mkdir(parents=True)
    (v2 / upload / "data").write_bytes(b"x" * 1000)
    (v2 / upload / "startedat").write_text("2026-01-01T00:00:00Z")
    place = place_of(v2)
    planned = run(*place.args, "--dry-run", "--grace", "0", "--upload-age", "0", "-f", "json")
    assert planned.exit_code == 0, planned.output
    kinds = {(e["kind"], e["id"]) for e in json.loads(planned.stdout)["delete"]}
    assert ("upload", "0a1b2c3d-0000-4000-8000-000000000001") in kinds
    assert ("repository", "ghost/app") in kinds
    done = run(*place.args, "--yes", "--grace", "0", "--upload-age", "0")
    assert done.exit_code == 0, done.output
    assert not place.has(f"{upload}/data")
    assert not place.has(f"{upload}/startedat")
    kept = run(*place.args, "--dry-run", "--grace", "0", "--format", "json")
    assert json.loads(kept.stdout)["delete"] == []
