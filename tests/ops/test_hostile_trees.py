"""Hostile or damaged trees: links, loops, FIFOs, junk and temp files in a registry's storage.

Each tree is a copy of the reference registry's fixture with something planted in it, next
to an `outside` folder full of files that no command may touch. gc must free the real
garbage planted beside the damage (an orphan blob, an abandoned upload) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcOptions, GcPlan, collect_garbage, plan_gc
from regtool.ops.ls import list_repositories, list_tags
from regtool.ops.verify import verify
from tests.conftest import FIXTURES, copy_tree
from tests.support.rgw import bucket_copy, bucket_objects

EXPECTED = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
EXPECTED_V1 = json.loads((FIXTURES / "v1" / "EXPECTED.json").read_text())
BUSYBOX = EXPECTED["manifests"]["busybox:latest"]
OLD = time.time() - 10 * 86400
UPLOAD = "0b5e6c2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b"
ALL_TAGS = sorted(f"{repo}:{tag}" for repo, tags in EXPECTED["tags"].items() for tag in tags)


@pytest.fixture
def tree(tmp_path: Path, walk_mode: str) -> tuple[Path, Path]:
    """(storage root, outside folder): the fixture with real garbage, and precious files."""
    root = copy_tree(FIXTURES / "v2", tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the registry's")
    return root, outside


def v2(root: Path, key: str) -> Path:
    return root / key


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_garbage(root: Path) -> tuple[str, Path]:
    """An unreferenced blob and an abandoned upload: what every gc here must free."""
    data = b"garbage nobody references"
    digest = sha(data)
    blob = v2(root, v2paths.blob_data(digest))
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    upload = v2(root, v2paths.upload_dir("busybox", UPLOAD))
    upload.mkdir(parents=True)
    (upload / "data").write_bytes(b"half a layer")
    (upload / "startedat").write_text("2015-01-01T00:00:00Z")
    for path in (blob, blob.parent, upload / "data", upload / "startedat", upload):
        os.utime(path, (OLD, OLD))
    return digest, upload


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def link_folders(root: Path, outside: Path, digests: list[str]) -> None:
    """Layer-link folders (as a repository's `_layers/sha256` holds) in `outside`."""
    for digest in digests:
        folder = outside / digest.partition(":")[2]
        folder.mkdir(parents=True)
        (folder / "link").write_text(digest)


def gc(root: Path, **options: object) -> GcPlan:
    opts = {"grace": 0.0, **options}
    return collect_garbage(open_storage(root, writable=True), GcOptions(**opts)).plan  # type: ignore[arg-type]


def dry(root: Path, **options: object) -> GcPlan:
    opts = {"grace": 0.0, **options}
    return plan_gc(open_reader(root), GcOptions(**opts))  # type: ignore[arg-type]


def assert_freed(plan: GcPlan, root: Path, orphan: str, upload: Path) -> None:
    assert not v2(root, v2paths.blob_dir(orphan)).exists()
    assert not upload.exists()
    assert {e.kind for e in plan.delete} >= {"blob", "upload"}


# -- gc never deletes through a link ---------------------------------------------------------
def test_gc_leaves_a_symlinked_layers_folder_and_what_it_points_to(tree):
    root, outside = tree
    orphan, upload = add_garbage(root)
    gone = ["sha256:" + "ab" * 32, "sha256:" + "cd" * 32]  # links to blobs that do not exist
    link_folders(root, outside / "layers", gone)
    before = files_of(outside)
    layers = v2(root, v2paths.layers_dir("busybox")) / "sha256"
    shutil.rmtree(layers)
    layers.symlink_to(outside / "layers")
    plan = gc(root)
    assert files_of(outside) == before
    assert layers.is_symlink()
    assert_freed(plan, root, orphan, upload)
    assert not plan.refused
    assert [issue.path for issue in plan.skipped] == [v2paths.layers_dir("busybox") + "/sha256"]
    assert "symbolic link" in plan.skipped[0].message


def test_gc_leaves_a_symlinked_uploads_folder(tree):
    root, outside = tree
    orphan, upload = add_garbage(root)
    stale = outside / "uploads" / "11111111-2222-3333-4444-555555555555"
    stale.mkdir(parents=True)
    (stale / "data").write_bytes(b"someone else's file")
    (stale / "startedat").write_text("2015-01-01T00:00:00Z")
    for path in (stale / "data", stale / "startedat", stale):
        os.utime(path, (OLD, OLD))
    before = files_of(outside)
    uploads = v2(root, v2paths.uploads_dir("centos"))
    uploads.symlink_to(outside / "uploads")
    plan = gc(root)
    assert files_of(outside) == before
    assert_freed(plan, root, orphan, upload)
    assert {issue.path for issue in plan.skipped} == {v2paths.uploads_dir("centos")}


def test_gc_refuses_a_repository_linked_from_outside_and_force_leaves_it(tree):
    root, outside = tree
    orphan, upload = add_garbage(root)
    # a repository folder elsewhere: links to blobs that are gone, nothing tagged
    elsewhere = outside / "repo"
    link_folders(root, elsewhere / "_layers" / "sha256", ["sha256:" + "ab" * 32])
    (elsewhere / "_manifests" / "revisions").mkdir(parents=True)
    before = files_of(outside)
    evil = v2(root, v2paths.repository("evil"))
    evil.symlink_to(elsewhere)

    refused = gc(root)
    assert refused.refused and refused.delete == ()
    assert [issue.path for issue in refused.problems] == [v2paths.repository("evil")]
    assert "may serve images through it" in refused.problems[0].message
    assert v2(root, v2paths.blob_data(orphan)).exists()

    forced = gc(root, force=True)
    assert files_of(outside) == before
    assert evil.is_symlink()
    assert_freed(forced, root, orphan, upload)
    assert "evil" not in {e.id for e in forced.delete}


def test_gc_never_deletes_through_a_symlinked_blob_fan(tree):
    root, outside = tree
    orphan, upload = add_garbage(root)
    data = b"a blob stored elsewhere"
    digest = sha(data)
    hexpart = digest.partition(":")[2]
    fan = v2(root, v2paths.BLOBS) / "sha256" / hexpart[:2]
    assert not fan.exists()
    (outside / "fan" / hexpart).mkdir(parents=True)
    (outside / "fan" / hexpart / "data").write_bytes(data)
    before = files_of(outside)
    fan.symlink_to(outside / "fan")
    plan = gc(root)
    assert files_of(outside) == before
    assert fan.is_symlink()
    assert digest not in {e.id for e in plan.delete}
    assert_freed(plan, root, orphan, upload)


@pytest.mark.parametrize("what", ["blob folder", "data file"])
def test_gc_leaves_a_symlinked_blob_folder_or_data_file(tree, what):
    root, outside = tree
    orphan, upload = add_garbage(root)
    data = b"bytes of a blob kept elsewhere"
    digest = sha(data)
    (outside / "blob").mkdir()
    (outside / "blob" / "data").write_bytes(data)
    folder = v2(root, v2paths.blob_dir(digest))
    if what == "blob folder":
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(outside / "blob")
        planted = folder
    else:
        folder.mkdir(parents=True)
        planted = folder / "data"
        planted.symlink_to(outside / "blob" / "data")
    before = files_of(outside)
    plan = gc(root)
    assert files_of(outside) == before
    assert planted.is_symlink()
    assert digest not in {e.id for e in plan.delete}
    assert_freed(plan, root, orphan, upload)
    assert str(planted.relative_to(root)) in {issue.path for issue in plan.skipped}


def test_gc_leaves_a_repository_symlink_loop_and_frees_the_rest(tree):
    root, _outside = tree
    orphan, upload = add_garbage(root)
    loop = v2(root, v2paths.repository("loop"))
    loop.symlink_to("..")
    plan = gc(root)
    assert not plan.refused
    assert loop.is_symlink()
    assert_freed(plan, root, orphan, upload)
    assert [issue.path for issue in plan.skipped] == [v2paths.repository("loop")]
    assert "back into the tree gc reads" in plan.skipped[0].message


def test_gc_refuses_when_a_tag_link_is_a_symlink_to_outside(tree):
    root, outside = tree
    orphan, _upload = add_garbage(root)
    current = v2(root, v2paths.tag_current_link("busybox", "latest"))
    (outside / "link").write_text(BUSYBOX["digest"])
    current.unlink()
    current.symlink_to(outside / "link")
    plan = gc(root, delete_untagged=True)
    assert plan.refused
    assert [issue.path for issue in plan.problems] == [
        v2paths.tag_current_link("busybox", "latest")
    ]
    assert v2(root, v2paths.blob_data(orphan)).exists()
    assert (outside / "link").read_text() == BUSYBOX["digest"]


# -- gc deletes only what it recognises ------------------------------------------------------
def _plant_junk(root: Path, where: str) -> Path:
    """Something the layout does not have, where gc sweeps."""
    gone = "sha256:" + "ab" * 32  # a digest whose blob is missing: its links are stale
    if where == "layer link named junk":
        path = v2(root, v2paths.layers_dir("busybox")) / "sha256" / "junk"
        path.write_text(gone)
    elif where == "layer link in upper case":
        path = v2(root, v2paths.layers_dir("busybox")) / "sha256" / ("AB" * 32)
        path.mkdir()
        (path / "link").write_text(gone)
    elif where == "layer link of short hex":
        path = v2(root, v2paths.layers_dir("busybox")) / "sha256" / "abcd"
        path.mkdir()
        (path / "link").write_text(gone)
    elif where == "file beside a stale layer link":
        folder = v2(root, v2paths.layer_link("busybox", gone)).parent
        folder.mkdir(parents=True)
        (folder / "link").write_text(gone)
        path = folder / "notes.txt"
        path.write_text("mine")
    elif where == "file in an orphan blob folder":
        data = b"an orphan with company"
        folder = v2(root, v2paths.blob_dir(sha(data)))
        folder.mkdir(parents=True)
        (folder / "data").write_bytes(data)
        path = folder / "README"
        path.write_text("mine")
    elif where == "folder in uploads":
        path = v2(root, v2paths.uploads_dir("busybox")) / "not-an-upload"
        path.mkdir(parents=True)
        (path / "data").write_bytes(b"mine")
    elif where == "file in an abandoned upload":
        folder = v2(root, v2paths.upload_dir("centos", "22222222-3333-4444-5555-666666666666"))
        folder.mkdir(parents=True)
        (folder / "data").write_bytes(b"x")
        path = folder / "keep.me"
        path.write_text("mine")
    else:
        raise AssertionError(where)
    os.utime(path, (OLD, OLD))
    return path


JUNK = [
    "layer link named junk",
    "layer link in upper case",
    "layer link of short hex",
    "file beside a stale layer link",
    "file in an orphan blob folder",
    "folder in uploads",
    "file in an abandoned upload",
]


@pytest.mark.parametrize("where", JUNK)
def test_gc_deletes_only_what_it_recognises(tree, where):
    root, _outside = tree
    orphan, upload = add_garbage(root)
    junk = _plant_junk(root, where)
    plan = gc(root, upload_age=0.0)
    assert junk.exists()
    assert_freed(plan, root, orphan, upload)


@pytest.mark.parametrize("where", JUNK)
def test_gc_on_a_bucket_deletes_only_what_it_recognises(rgw, tmp_path, where):
    """The same junk in an S3 bucket (a copy of the tree): gc frees the garbage beside it
    and leaves every key it does not recognise."""
    root = copy_tree(FIXTURES / "v2", tmp_path / "root")
    orphan, upload = add_garbage(root)
    junk = str(_plant_junk(root, where).relative_to(root))
    config = bucket_copy(rgw, root, tmp_path)
    store = open_storage(None, config, writable=True)
    plan = collect_garbage(store, GcOptions(grace=0.0, upload_age=0.0)).plan
    keys = {key.removeprefix("registry/") for key in bucket_objects(rgw, config)}
    assert {e.kind for e in plan.delete} >= {"blob", "upload"}
    assert junk in keys or any(key.startswith(junk + "/") for key in keys)
    assert not any(key.startswith(v2paths.blob_dir(orphan) + "/") for key in keys)
    upload_key = str(upload.relative_to(root))
    assert not any(key.startswith(upload_key + "/") for key in keys)


def test_gc_leaves_a_revision_folder_holding_junk_with_delete_untagged(tree):
    root, _outside = tree
    untagged = EXPECTED["untagged"]["busybox"][0]["digest"]
    folder = v2(root, v2paths.revision_link("busybox", untagged)).parent
    (folder / "extra").write_text("mine")
    plan = gc(root, delete_untagged=True)
    assert (folder / "extra").exists() and (folder / "link").exists()
    assert f"busybox@{untagged}" not in {e.id for e in plan.delete if e.kind == "manifest"}
    assert str(folder.relative_to(root)) in {issue.path for issue in plan.skipped}


def test_gc_leaves_an_emptied_repository_that_holds_junk(tree):
    root, _outside = tree
    empty = v2(root, v2paths.repository("emptied"))
    (empty / "_layers").mkdir(parents=True)
    (empty / "_manifests" / "revisions").mkdir(parents=True)
    (empty / "_layers" / "owner.txt").write_text("mine")
    bare = v2(root, v2paths.repository("bare"))
    (bare / "_layers").mkdir(parents=True)
    plan = gc(root)
    assert (empty / "_layers" / "owner.txt").exists()
    assert {e.id for e in plan.delete if e.kind == "repository"} == {"bare"}
    assert not bare.exists()


# -- temp files of killed writes -------------------------------------------------------------
def test_gc_plans_old_temp_files_with_their_size_and_keeps_young_ones(tree):
    root, _outside = tree
    killed = v2(root, v2paths.blob_dir("sha256:" + "12" * 32))
    killed.mkdir(parents=True)
    old_temp = killed / f"data.{'a1' * 16}.tmp"
    old_temp.write_bytes(b"x" * 1000)
    os.utime(old_temp, (OLD, OLD))
    revision = v2(root, v2paths.revision_link("centos", "sha256:" + "34" * 32)).parent
    revision.mkdir(parents=True)
    link_temp = revision / "link.0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tmp"
    link_temp.write_text("sha256:")
    os.utime(link_temp, (OLD, OLD))
    young_blob = v2(root, v2paths.blob_dir("sha256:" + "56" * 32))
    young_blob.mkdir(parents=True)
    young = young_blob / f"data.{'b2' * 16}.tmp"
    young.write_bytes(b"in flight")

    shown = dry(root, grace=3600.0)
    temps = {e.path: e for e in shown.delete if e.kind == "temp"}
    assert set(temps) == {str(p.relative_to(root)) for p in (old_temp, link_temp)}
    assert temps[str(old_temp.relative_to(root))].size == 1000
    assert shown.kept_recent >= 1

    result = collect_garbage(open_storage(root, writable=True), GcOptions(grace=3600.0), shown)
    assert not old_temp.exists() and not killed.exists()  # the emptied folder goes too
    assert not link_temp.exists() and not revision.exists()
    assert young.exists()
    assert {e.kind for e in result.plan.delete} == {"temp"}
    assert dry(root, grace=3600.0).delete == ()


# -- readers: ls and verify ------------------------------------------------------------------
def test_ls_lists_the_real_tags_beside_a_loop_and_reports_it(tree):
    root, _outside = tree
    v2(root, v2paths.repository("loop")).symlink_to("..")
    reader = open_reader(root)
    rows = list_tags(reader)
    assert sorted(f"{row.repository}:{row.tag}" for row in rows) == ALL_TAGS
    assert [issue.path for issue in reader.foreign_objects()] == [v2paths.repository("loop")]
    assert {row.repository for row in list_repositories(open_reader(root))} == set(
        EXPECTED["catalog"]
    )


def test_ls_warns_about_a_tag_folder_that_is_a_link(tree):
    root, outside = tree
    shutil.copytree(v2(root, v2paths.tag_dir("centos", "6.7")), outside / "tag")
    v2(root, v2paths.tag_dir("centos", "evil")).symlink_to(outside / "tag")
    rows = {f"{row.repository}:{row.tag}": row for row in list_tags(open_reader(root))}
    assert rows["centos:evil"].digest is None
    assert "symbolic link" in rows["centos:evil"].warnings[0]
    assert rows["centos:6.7"].digest is not None


def _findings(root: Path, kind: str) -> dict[str, str]:
    report = verify(open_reader(root), quick=False)
    return {f.path: f.severity for f in report.problems if f.kind == kind}


def test_verify_reports_links_in_the_tree_as_errors(tree):
    root, outside = tree
    v2(root, v2paths.repository("loop")).symlink_to("..")
    link_folders(root, outside / "layers", ["sha256:" + "ab" * 32])
    layers = v2(root, v2paths.layers_dir("sshd")) / "sha256"
    shutil.rmtree(layers)
    layers.symlink_to(outside / "layers")
    found = _findings(root, "symlink")
    assert found == {
        v2paths.repository("loop"): "error",
        v2paths.layers_dir("sshd") + "/sha256": "error",
    }


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo"])
def test_verify_never_opens_a_data_file_that_is_not_a_regular_file(tree, kind):
    root, _outside = tree
    path = v2paths.blob_data(BUSYBOX["layers"][0])
    data = v2(root, path)
    data.unlink()
    if kind == "fifo":
        os.mkfifo(data)
    else:
        data.symlink_to("/dev/zero")
    # a subprocess, so that the old code's endless read fails the test instead of hanging it
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "verify", "--root", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        check=False,
    )
    assert done.returncode == 1, done.stderr
    problems = json.loads(done.stdout)["problems"]
    wanted = "special-file" if kind == "fifo" else "symlink"
    found = [p for p in problems if p["kind"] == wanted and p["path"] == path]
    assert found and found[0]["severity"] == "error" and found[0]["hint"]


# -- v1 --------------------------------------------------------------------------------------
@pytest.fixture
def v1_tree(tmp_path: Path, walk_mode: str) -> tuple[Path, Path]:
    root = copy_tree(FIXTURES / "v1", tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    return root, outside


def test_gc_v1_leaves_a_symlinked_image_folder(v1_tree):
    root, outside = v1_tree
    orphan = EXPECTED_V1["orphans"][0]
    image = root / v1paths.image_dir(orphan)
    shutil.move(image, outside / orphan)
    image.symlink_to(outside / orphan)
    before = files_of(outside)
    plan = gc(root)
    assert files_of(outside) == before and image.is_symlink()
    assert orphan not in {e.id for e in plan.delete}
    assert EXPECTED_V1["in_progress"][0] in {e.id for e in plan.delete}  # the real garbage
    assert v1paths.image_dir(orphan) in {issue.path for issue in plan.skipped}


def test_gc_v1_never_deletes_through_a_symlinked_images_folder(v1_tree):
    root, outside = v1_tree
    images = root / v1paths.IMAGES
    shutil.move(images, outside / "images")
    images.symlink_to(outside / "images")
    before = files_of(outside)
    plan = gc(root)
    assert files_of(outside) == before
    assert plan.refused  # the tagged images cannot be read: what they need is unprovable


def test_gc_v1_refuses_a_namespace_linked_from_outside(v1_tree):
    root, outside = v1_tree
    shutil.move(root / "repositories" / "gjkdhr", outside / "gjkdhr")
    (root / "repositories" / "gjkdhr").symlink_to(outside / "gjkdhr")
    plan = gc(root)
    assert plan.refused
    assert [issue.path for issue in plan.problems] == ["repositories/gjkdhr"]
    assert all((root / v1paths.image_dir(i)).exists() for i in EXPECTED_V1["orphans"])


def test_gc_v1_leaves_an_image_folder_holding_a_link(v1_tree):
    root, outside = v1_tree
    orphan = EXPECTED_V1["orphans"][0]
    (outside / "secret").write_text("mine")
    (root / v1paths.image_dir(orphan) / "extra").symlink_to(outside / "secret")
    plan = gc(root)
    assert (outside / "secret").exists()
    assert (root / v1paths.image_dir(orphan) / "extra").is_symlink()
    assert orphan not in {e.id for e in plan.delete}
