"""gc planning and deletion on copies of the fixture trees, one situation at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regtool.errors import LockHeldError
from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.ops import gc_io
from regtool.ops.gc import (
    GcEntry,
    GcOptions,
    GcPlan,
    collect_garbage,
    ordered,
    plan_gc,
)
from regtool.storage.lock import storage_lock
from tests.conftest import FIXTURES, snapshot
from tests.support.ocitar import index_of_indexes
from tests.support.rgw import bucket_copy

EXPECTED_V2 = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
EXPECTED_V1 = json.loads((FIXTURES / "v1" / "EXPECTED.json").read_text())
UNTAGGED_BUSYBOX = EXPECTED_V2["untagged"]["busybox"][0]
ARTIFACT = EXPECTED_V2["untagged"]["sshd"][0]
MULTI = EXPECTED_V2["manifests"]["multi:latest"]
ARM_CHILD = MULTI["manifests"][1]["digest"]
BUSYBOX = EXPECTED_V2["manifests"]["busybox:latest"]
ORPHAN_V1 = EXPECTED_V1["orphans"][0]
IN_PROGRESS_V1 = EXPECTED_V1["in_progress"][0]
V1_TAGS = {(t["repository"], t["tag"]): t for t in EXPECTED_V1["tags"]}
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
OLD = time.time() - 10 * 86400
RUBBISH = b"not referenced by anything"


TWIN: Any = None  # the RGW cluster while a test runs: plans are made in a bucket too


@pytest.fixture(autouse=True)
def bucket_twin(rgw: Any, tmp_path: Path) -> Iterator[None]:
    """Every plan of a v2 tree a test makes (with no grace: a bucket's objects are all new)
    is also made on a copy of the tree in an S3 bucket, and must be the same."""
    global TWIN
    TWIN = (rgw, tmp_path)
    yield
    TWIN = None


def plan(root: Path, **options: object) -> GcPlan:
    opts = {"grace": 0.0, **options}
    result = plan_gc(open_reader(root), GcOptions(**opts))  # type: ignore[arg-type]
    if TWIN is not None and result.layout == "v2" and not opts["grace"]:
        cluster, folder = TWIN
        config = bucket_copy(cluster, root, folder)
        twin = plan_gc(open_storage(config=config).reader, GcOptions(**opts))  # type: ignore[arg-type]
        assert (twin.delete, twin.problems, twin.warnings) == (
            result.delete,
            result.problems,
            result.warnings,
        )
    return result


def blobs(result: GcPlan) -> set[str]:
    return {e.id for e in result.delete if e.kind == "blob"}


def of_kind(result: GcPlan, kind: str) -> set[str]:
    return {e.id for e in result.delete if e.kind == kind}


def age(root: Path, when: float = OLD) -> None:
    """Make root and every file and folder under it look `when` old (no bucket twin then:
    an object's time is when it was uploaded)."""
    global TWIN
    TWIN = None
    os.utime(root, (when, when))
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (when, when), follow_symlinks=False)


def add_blob(root: Path, data: bytes = RUBBISH) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / v2paths.blob_data(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return digest


def child_layers(manifest_digest: str, root: Path) -> set[str]:
    doc = json.loads((root / v2paths.blob_data(manifest_digest)).read_bytes())
    return {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}


def test_deletion_order_puts_references_before_what_they_name():
    entries = [
        GcEntry("blob", "b", 1, "b"),
        GcEntry("repository", "r", 0, "r"),
        GcEntry("manifest", "m", 0, "m"),
        GcEntry("upload", "u", 0, "u"),
        GcEntry("link", "l", 0, "l"),
        GcEntry("link", "r@b", 0, "docker/registry/v2/repositories/r/_layers/sha256/b"),
    ]
    assert [e.id for e in ordered(entries)] == ["l", "m", "u", "r@b", "r", "b"]


# -- v2 mark and sweep ----------------------------------------------------------------------
def test_gc_on_the_reference_fixture_finds_nothing_and_writes_nothing(v2_root):
    before = snapshot(v2_root)
    result = plan(v2_root)
    assert result.delete == ()
    assert result.problems == ()
    assert snapshot(v2_root) == before


def test_delete_untagged_drops_the_untagged_manifest_its_tag_history_and_its_own_blobs(v2_root):
    result = plan(v2_root, delete_untagged=True)
    digest = UNTAGGED_BUSYBOX["digest"]
    assert of_kind(result, "manifest") == {f"busybox@{digest}"}
    own = {digest, UNTAGGED_BUSYBOX["config"]} | set(UNTAGGED_BUSYBOX["layers"])
    assert blobs(result) == own - set(BUSYBOX["layers"])  # the shared layer stays
    links = of_kind(result, "link")
    assert f"busybox:latest@{digest}" in links  # the tag's index/ history entry
    assert {f"busybox@{d}" for d in blobs(result) if d != digest} <= links


def test_gc_keeps_layers_of_untagged_index_child(v2_root):
    result = plan(v2_root, delete_untagged=True)
    for child in MULTI["manifests"]:
        needed = {child["digest"]} | child_layers(child["digest"], v2_root)
        assert not needed & blobs(result)
        assert f"multi@{child['digest']}" not in of_kind(result, "manifest")


def test_gc_keeps_artifact_whose_subject_is_kept(v2_root):
    result = plan(v2_root, delete_untagged=True)
    assert f"sshd@{ARTIFACT['digest']}" not in of_kind(result, "manifest")
    assert not ({ARTIFACT["digest"], ARTIFACT["config"], *ARTIFACT["layers"]} & blobs(result))


def test_gc_keeps_layers_of_deleted_child_of_tagged_index(v2_root):
    # what DELETE /v2/multi/manifests/<child> does: the revision link goes, data stays
    (v2_root / v2paths.revision_link("multi", ARM_CHILD)).unlink()
    result = plan(v2_root)
    assert not (child_layers(ARM_CHILD, v2_root) | {ARM_CHILD}) & blobs(result)


def test_gc_follows_nested_indexes_to_any_depth(v2_root):
    digest = add_blob(v2_root, index_of_indexes(MULTI["digest"], MULTI["size"]))
    link = v2_root / v2paths.tag_current_link("busybox", "nested")
    link.parent.mkdir(parents=True)
    link.write_text(digest)
    for name in ("multi",):  # only the nested tag keeps multi's tree alive
        for tag_dir in (v2_root / v2paths.tags_dir(name)).iterdir():
            for p in sorted(tag_dir.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            tag_dir.rmdir()
    result = plan(v2_root, delete_untagged=True)
    for child in MULTI["manifests"]:
        assert not (child_layers(child["digest"], v2_root) & blobs(result))
    assert digest not in blobs(result)


def test_gc_sweeps_an_unreferenced_blob_and_removes_dangling_layer_links(v2_root):
    orphan = add_blob(v2_root)
    link = v2_root / v2paths.layer_link("busybox", orphan)
    link.parent.mkdir(parents=True)
    link.write_text(orphan)
    gone = "sha256:" + "ab" * 32  # a link whose blob is already missing
    dangling = v2_root / v2paths.layer_link("centos", gone)
    dangling.parent.mkdir(parents=True)
    dangling.write_text(gone)
    result = plan(v2_root)
    assert blobs(result) == {orphan}
    assert of_kind(result, "link") == {f"busybox@{orphan}", f"centos@{gone}"}
    entry = next(e for e in result.delete if e.kind == "blob")
    assert entry.size == len(RUBBISH)
    assert entry.path == v2paths.blob_dir(orphan)
    assert result.bytes == len(RUBBISH)


def test_gc_keeps_a_blob_written_within_the_grace_window(v2_root):
    age(v2_root)
    orphan = add_blob(v2_root)
    assert orphan not in blobs(plan(v2_root, grace=3600.0))
    assert plan(v2_root, grace=3600.0).kept_recent == 1
    assert orphan in blobs(plan(v2_root, grace=0.0))


def test_gc_keeps_an_old_blob_whose_layer_link_is_recent(v2_root):
    orphan = add_blob(v2_root)
    age(v2_root)
    link = v2_root / v2paths.layer_link("busybox", orphan)
    link.parent.mkdir(parents=True)
    link.write_text(orphan)  # a push in flight: blob linked, manifest not yet written
    assert orphan not in blobs(plan(v2_root, grace=1800.0))
    assert orphan in blobs(plan(v2_root, grace=0.0))


def test_gc_keeps_a_recent_untagged_manifest_with_delete_untagged(v2_root):
    age(v2_root)
    os.utime(v2_root / v2paths.revision_link("busybox", UNTAGGED_BUSYBOX["digest"]))
    result = plan(v2_root, delete_untagged=True, grace=3600.0)
    assert of_kind(result, "manifest") == set()
    assert blobs(result) == set()


def test_gc_ignores_temp_files_in_blob_folders(v2_root):
    live = v2_root / v2paths.blob_dir(BUSYBOX["layers"][0])
    (live / "data.0b1c.tmp").write_bytes(b"half")
    only_temp = v2_root / v2paths.blob_dir("sha256:" + "cd" * 32)
    only_temp.mkdir(parents=True)
    (only_temp / "data.5e7f.tmp").write_bytes(b"half")
    junk = v2_root / v2paths.BLOBS / "sha256" / "zz" / "not-a-digest"
    junk.mkdir(parents=True)
    (junk / "data").write_bytes(b"junk")
    result = plan(v2_root)
    assert result.delete == ()


def test_real_gc_counts_every_file_of_a_swept_blob_folder(v2_root):
    orphan = add_blob(v2_root)
    (v2_root / v2paths.blob_dir(orphan) / f"data.{'1f' * 16}.tmp").write_bytes(b"12345")
    assert plan(v2_root).bytes == len(RUBBISH)  # the dry run stats `data` only
    result = collect_garbage(open_storage(v2_root, writable=True), GcOptions(grace=0))
    assert result.plan.bytes == len(RUBBISH) + 5
    assert not (v2_root / v2paths.blob_dir(orphan)).exists()


def test_gc_removes_stale_uploads_and_keeps_recent_ones(v2_root):
    stale = v2_root / v2paths.upload_dir("busybox", "11111111-2222-3333-4444-555555555555")
    fresh = v2_root / v2paths.upload_dir("busybox", "66666666-7777-8888-9999-000000000000")
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "data").write_bytes(b"x" * 100)
        (folder / "startedat").write_text("2026-01-01T00:00:00Z")
    age(stale)
    result = plan(v2_root)
    assert of_kind(result, "upload") == {stale.name}
    entry = next(e for e in result.delete if e.kind == "upload")
    assert entry.path == v2paths.upload_dir("busybox", stale.name)
    assert entry.size == 100 + len("2026-01-01T00:00:00Z")
    assert of_kind(plan(v2_root, upload_age=0.0), "upload") == {stale.name, fresh.name}


def test_gc_removes_a_repository_left_with_nothing(v2_root):
    tags = v2_root / v2paths.tags_dir("busybox")
    for p in sorted(tags.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tags.rmdir()
    result = plan(v2_root, delete_untagged=True)
    assert of_kind(result, "repository") == {"busybox"}
    assert of_kind(result, "manifest") == {
        f"busybox@{BUSYBOX['digest']}",
        f"busybox@{UNTAGGED_BUSYBOX['digest']}",
    }
    assert BUSYBOX["layers"][0] in blobs(result)
    assert plan(v2_root).delete == ()  # without -m its revisions keep it


def test_gc_refuses_when_a_revision_link_is_malformed(v2_root):
    link = v2_root / v2paths.revision_link(
        "centos", EXPECTED_V2["manifests"]["centos:6.7"]["digest"]
    )
    link.write_text(link.read_text() + "\n")
    add_blob(v2_root)
    result = plan(v2_root)
    assert result.refused
    assert [issue.path for issue in result.problems] == [
        str(link.relative_to(v2_root)).replace(os.sep, "/")
    ]
    assert "newline" in result.problems[0].message
    forced = plan(v2_root, force=True)
    assert not forced.refused and len(blobs(forced)) == 1


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"schemaVersion": 2, "mediaType": "x"}'])
def test_gc_refuses_when_a_tagged_manifest_cannot_be_parsed(v2_root, content):
    (v2_root / v2paths.blob_data(BUSYBOX["digest"])).write_bytes(content)
    result = plan(v2_root)
    assert result.refused
    assert result.problems[0].path == v2paths.blob_data(BUSYBOX["digest"])


def test_gc_refuses_when_an_index_child_is_missing(v2_root):
    import shutil

    shutil.rmtree(v2_root / v2paths.blob_dir(ARM_CHILD))
    result = plan(v2_root)
    assert result.refused
    assert ARM_CHILD in result.problems[0].message


def test_gc_keeps_a_blob_referenced_by_a_sha512_alias(v2_root):
    orphan = add_blob(v2_root)
    alias = "sha512:" + "ef" * 64
    link = v2_root / v2paths.layer_link("busybox", alias)
    link.parent.mkdir(parents=True)
    link.write_text(orphan)
    config = BUSYBOX["config"]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 1,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": alias,
                    "size": len(RUBBISH),
                }
            ],
        }
    ).encode()
    digest = add_blob(v2_root, manifest)
    rev = v2_root / v2paths.revision_link("busybox", digest)
    rev.parent.mkdir(parents=True)
    rev.write_text(digest)
    assert orphan not in blobs(plan(v2_root))


def test_parallel_plan_equals_the_sequential_one(tmp_path, monkeypatch):
    root = tmp_path / "syn"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "mksynthetic.py"), "--small", "--out", str(root)],
        check=True,
        capture_output=True,
    )
    sequential = plan(root)
    monkeypatch.setattr(gc_io, "PARALLEL_MIN_REPOSITORIES", 1)
    monkeypatch.setattr(gc_io, "MAX_WORKERS", 2)
    monkeypatch.setattr(gc_io.os, "sched_getaffinity", lambda pid: {0, 1})
    parallel = plan(root)
    assert parallel.delete == sequential.delete
    assert parallel.marked == sequential.marked
    assert blobs(parallel)


# -- applying -------------------------------------------------------------------------------
def test_collect_garbage_deletes_exactly_the_plan(v2_root):
    orphan = add_blob(v2_root)
    shown = plan(v2_root, delete_untagged=True)
    result = collect_garbage(
        open_storage(v2_root, writable=True), GcOptions(grace=0, delete_untagged=True), shown
    )
    assert set(result.plan.delete) == set(shown.delete)
    assert result.skipped == () and result.failed == ()
    for entry in shown.delete:
        assert not (v2_root / entry.path).exists()
    assert orphan in blobs(shown)
    assert plan(v2_root, delete_untagged=True).delete == ()
    assert (v2_root / ".regtool.lock").exists()


def test_collect_garbage_leaves_what_became_live_since_the_plan(v2_root):
    live = BUSYBOX["layers"][0]
    stale = GcEntry("blob", live, 1, v2paths.blob_dir(live))
    shown = GcPlan("v2", (stale,))
    result = collect_garbage(open_storage(v2_root, writable=True), GcOptions(grace=0), shown)
    assert result.plan.delete == ()
    assert result.skipped == (stale,)
    assert (v2_root / v2paths.blob_data(live)).exists()


class TagsDuringDeletes:
    """A driver that, when gc deletes its first manifest, lets a registry tag that manifest
    again (as registry:2 would, taking no lock): its blobs must then survive."""

    def __init__(self, driver, root: Path, digest: str) -> None:
        self.driver, self.root, self.digest = driver, root, digest

    def __getattr__(self, name: str):
        return getattr(self.driver, name)

    def delete(self, path: str) -> None:
        self.driver.delete(path)
        if "/_manifests/revisions/" in path:
            link = self.root / v2paths.tag_current_link("busybox", "again")
            link.parent.mkdir(parents=True)
            link.write_text(self.digest)


def test_a_tag_written_during_the_manifest_phase_keeps_its_blobs(v2_root):
    import dataclasses

    digest = UNTAGGED_BUSYBOX["digest"]
    store = open_storage(v2_root, writable=True)
    store = dataclasses.replace(store, driver=TagsDuringDeletes(store.driver, v2_root, digest))
    result = collect_garbage(store, GcOptions(grace=0, delete_untagged=True))
    assert f"busybox@{digest}" in {e.id for e in result.plan.delete}  # the manifest went
    kept = {e.id for e in result.skipped}
    assert digest in kept and UNTAGGED_BUSYBOX["config"] in kept
    for blob in kept:
        assert (v2_root / v2paths.blob_data(blob)).exists()
    assert not {e.id for e in result.plan.delete if e.kind == "blob"}


def test_collect_garbage_deletes_nothing_when_refused(v2_root):
    orphan = add_blob(v2_root)
    (v2_root / v2paths.blob_data(BUSYBOX["digest"])).write_bytes(b"")
    result = collect_garbage(open_storage(v2_root, writable=True), GcOptions(grace=0))
    assert result.plan.refused and result.plan.delete == ()
    assert (v2_root / v2paths.blob_data(orphan)).exists()


def test_second_gc_while_the_lock_is_held_fails_with_lock_held(v2_root):
    with storage_lock(v2_root, exclusive=True):
        with pytest.raises(LockHeldError) as caught:
            collect_garbage(open_storage(v2_root, writable=True), GcOptions(grace=0))
    assert ".regtool.lock" in caught.value.message


def test_collect_garbage_removes_an_emptied_repository_but_not_a_nested_one(v2_root):
    nested = v2_root / v2paths.layers_dir("busybox/inner")
    nested.mkdir(parents=True)
    (nested.parent / "_manifests").mkdir()
    age(v2_root)
    tags = v2_root / v2paths.tags_dir("busybox")
    for p in sorted(tags.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    options = GcOptions(grace=0, delete_untagged=True)
    result = collect_garbage(open_storage(v2_root, writable=True), options)
    assert {"busybox", "busybox/inner"} == of_kind(result.plan, "repository")
    assert not (v2_root / v2paths.repository("busybox")).exists()


# -- v1 -------------------------------------------------------------------------------------
def test_gc_v1_sweeps_orphans_and_old_unfinished_pushes(v1_root):
    result = plan(v1_root)
    assert of_kind(result, "image") == {ORPHAN_V1, IN_PROGRESS_V1}
    entry = next(e for e in result.delete if e.id == ORPHAN_V1)
    folder = v1_root / v1paths.image_dir(ORPHAN_V1)
    assert entry.size == sum(p.stat().st_size for p in folder.iterdir())
    assert entry.path == v1paths.image_dir(ORPHAN_V1)


def test_gc_v1_does_not_count_index_images_as_a_root(v1_root):
    index = v1_root / v1paths.index_images("library/busybox")
    entries = json.loads(index.read_text())
    index.write_text(json.dumps([*entries, {"id": ORPHAN_V1}]))  # it only ever grows
    assert ORPHAN_V1 in of_kind(plan(v1_root), "image")


def test_gc_v1_keeps_an_unfinished_push_within_the_grace_window(v1_root):
    age(v1_root)
    os.utime(v1_root / v1paths.image_inprogress(IN_PROGRESS_V1))
    assert of_kind(plan(v1_root, grace=3600.0), "image") == {ORPHAN_V1}


def test_gc_v1_follows_json_parents_when_ancestry_is_missing(v1_root):
    tag = V1_TAGS[("library/centos", "httpd")]
    (v1_root / v1paths.image_ancestry(tag["image"])).unlink()
    assert of_kind(plan(v1_root), "image") == {ORPHAN_V1, IN_PROGRESS_V1}


def test_gc_v1_refuses_when_a_tagged_chain_is_broken(v1_root):
    tag = V1_TAGS[("library/centos", "httpd")]
    parent = tag["ancestry"][1]
    (v1_root / v1paths.image_json(parent)).unlink()
    result = plan(v1_root)
    assert result.refused
    assert result.problems[0].path == v1paths.image_json(parent)
    assert (
        collect_garbage(open_storage(v1_root, writable=True), GcOptions(grace=0)).plan.delete == ()
    )
    assert (v1_root / v1paths.image_dir(ORPHAN_V1)).exists()


def test_gc_v1_deletes_the_plan_and_leaves_tags_whole(v1_root):
    result = collect_garbage(open_storage(v1_root, writable=True), GcOptions(grace=0))
    assert of_kind(result.plan, "image") == {ORPHAN_V1, IN_PROGRESS_V1}
    remaining = {p.name for p in (v1_root / v1paths.IMAGES).iterdir()}
    assert remaining == set(EXPECTED_V1["live_images"])


def test_gc_refuses_a_revision_link_that_names_another_digest(v2_root):
    untagged = UNTAGGED_BUSYBOX["digest"]
    link = v2_root / v2paths.revision_link("busybox", untagged)
    link.write_text(BUSYBOX["digest"])  # the folder says one manifest, the link another
    result = plan(v2_root, delete_untagged=True)
    assert result.refused
    assert [issue.path for issue in result.problems] == [v2paths.revision_link("busybox", untagged)]
    assert "not its own digest" in result.problems[0].message
