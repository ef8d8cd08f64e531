"""rm on copies of both fixture trees: what is removed, what is kept and why."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regtool.errors import (
    BadReferenceError,
    LockHeldError,
    NoMatchError,
    UnknownReferenceError,
    UsageError,
)
from regtool.layout import journal
from regtool.layout.detect import open_reader
from regtool.layout.journal import Removed
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcEntry, GcOptions, plan_gc
from regtool.ops.rm import RmPlan, plan_rm, remove
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.lock import storage_lock
from tests.conftest import FIXTURES
from tests.support.ocitar import index_of_indexes
from tests.support.rgw import bucket_copy
from tests.support.v2tree import put_blob, put_link

EXPECTED_V2 = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
BUSYBOX = EXPECTED_V2["manifests"]["busybox:latest"]
CENTOS67 = EXPECTED_V2["manifests"]["centos:6.7"]
MULTI = EXPECTED_V2["manifests"]["multi:latest"]
ARM_CHILD = MULTI["manifests"][1]["digest"]


TWIN: Any = None  # (RGW cluster, folder) while a test runs: rm plans are made in a bucket too


@pytest.fixture(autouse=True)
def bucket_twin(rgw: Any, tmp_path: Path) -> Iterator[None]:
    global TWIN
    TWIN = (rgw, tmp_path)
    yield
    TWIN = None


def plan_rm_checked(reader: Any, refs: list[str], **options: Any) -> RmPlan:
    """plan_rm, also made on a copy of the v2 tree in an S3 bucket (by the same references):
    the plan, or the error, must be the same."""
    try:
        found: RmPlan | UsageError = plan_rm(reader, refs, **options)
    except UsageError as exc:
        found = exc
    if TWIN is not None and reader.layout == "v2" and reader.root is not None:
        cluster, folder = TWIN
        twin_reader = open_storage(config=bucket_copy(cluster, reader.root, folder)).reader
        try:
            twin: RmPlan | UsageError = plan_rm(twin_reader, refs, **options)
        except UsageError as exc:
            twin = exc
        if isinstance(found, UsageError):
            assert isinstance(twin, type(found)) and str(twin) == str(found)
        else:
            assert twin == found
    if isinstance(found, UsageError):
        raise found
    return found


def kinds(plan: RmPlan) -> set[tuple[str, str]]:
    return {(e.kind, e.id) for e in plan.delete}


def test_rm_v2_keep_manifest_removes_the_tag_folder_and_leaves_the_revision(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), ["busybox:latest"], manifest=False)
    assert plan.delete == (
        GcEntry("tag", "busybox:latest", 0, v2paths.tag_dir("busybox", "latest")),
    )
    result = remove(open_storage(v2_root, writable=True), ["busybox:latest"], manifest=False)
    assert result.plan.delete == plan.delete
    assert not (v2_root / v2paths.tag_dir("busybox", "latest")).exists()
    assert (v2_root / v2paths.revision_link("busybox", BUSYBOX["digest"])).exists()


def test_rm_v2_drops_the_revision_by_default_so_gc_frees_the_layers(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), ["centos6"])
    digest = EXPECTED_V2["manifests"]["centos6:latest"]["digest"]
    assert kinds(plan) == {("tag", "centos6:latest"), ("manifest", f"centos6@{digest}")}
    remove(open_storage(v2_root, writable=True), ["centos6"])
    assert not (v2_root / v2paths.revision_link("centos6", digest)).exists()
    swept = {e.id for e in plan_gc(open_reader(v2_root), GcOptions(grace=0)).delete}
    assert digest in swept


def test_rm_v2_manifest_kept_while_another_tag_points_at_it(v2_root):
    tags = v2_root / v2paths.tags_dir("centos")
    shutil.copytree(tags / "6.7", tags / "six")
    plan = plan_rm_checked(open_reader(v2_root), ["centos:6.7"], manifest=True)
    assert kinds(plan) == {("tag", "centos:6.7")}
    assert plan.notes and "centos:six" in plan.notes[0]
    both = plan_rm_checked(open_reader(v2_root), ["centos:6.7", "centos:six"], manifest=True)
    assert ("manifest", f"centos@{CENTOS67['digest']}") in kinds(both)


def test_rm_v2_manifest_by_digest_keeps_a_child_of_a_tagged_index(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), [f"multi@{ARM_CHILD}"], manifest=True)
    assert plan.delete == ()
    assert "multi:latest" in plan.notes[0]


def test_rm_v2_keeps_a_child_an_index_of_indexes_still_reaches(v2_root):
    digest = put_blob(v2_root, index_of_indexes(MULTI["digest"], MULTI["size"]))
    put_link(v2_root, v2paths.tag_current_link("multi", "nested"), digest)
    plan = plan_rm_checked(
        open_reader(v2_root), ["multi:latest", f"multi@{ARM_CHILD}"], manifest=True
    )
    assert ("manifest", f"multi@{ARM_CHILD}") not in kinds(plan)
    assert any("multi:nested" in note for note in plan.notes)


def test_rm_v2_manifest_by_digest_removes_every_tag_pointing_at_it(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), [f"busybox@{BUSYBOX['digest']}"], manifest=True)
    assert kinds(plan) == {
        ("tag", "busybox:latest"),
        ("manifest", f"busybox@{BUSYBOX['digest']}"),
    }


def test_rm_by_digest_with_keep_manifest_is_a_usage_error(v2_root):
    with pytest.raises(UsageError, match="--keep-manifest"):
        plan_rm_checked(open_reader(v2_root), [f"busybox@{BUSYBOX['digest']}"], manifest=False)


def test_rm_accepts_library_short_forms_on_v1(v1_root):
    plan = plan_rm(open_reader(v1_root), ["busybox"])
    assert {e.path for e in plan.delete} == {
        v1paths.tag_file("library/busybox", "latest"),
        v1paths.tag_json("library/busybox", "latest"),
        v1paths.repository_json("library/busybox"),
    }
    remove(open_storage(v1_root, writable=True), ["busybox"])
    for entry in plan.delete:
        assert not (v1_root / entry.path).exists()
    assert (v1_root / v1paths.index_images("library/busybox")).exists()


def test_rm_v1_of_a_tag_other_than_latest_keeps_the_repository_json(v1_root):
    plan = plan_rm(open_reader(v1_root), ["library/centos:6.7"])
    assert {e.path for e in plan.delete} == {
        v1paths.tag_file("library/centos", "6.7"),
        v1paths.tag_json("library/centos", "6.7"),
    }


def test_rm_v1_removes_tags_only_with_or_without_keep_manifest(v1_root):
    reader = open_reader(v1_root)
    assert (
        plan_rm(reader, ["busybox"], manifest=False).delete == plan_rm(reader, ["busybox"]).delete
    )


def test_rm_removes_a_tag_whose_link_is_broken(v2_root):
    (v2_root / v2paths.tag_current_link("busybox", "latest")).write_text("garbage")
    plan = plan_rm_checked(open_reader(v2_root), ["busybox:latest"], manifest=True)
    assert kinds(plan) == {("tag", "busybox:latest")}
    assert "broken" in plan.notes[0]


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("busybox:nope", UnknownReferenceError),
        ("nothere", UnknownReferenceError),
        ("Bad Ref", BadReferenceError),
    ],
)
def test_rm_names_what_it_cannot_find(v2_root, ref, error):
    with pytest.raises(error):
        plan_rm_checked(open_reader(v2_root), [ref])


def test_rm_while_the_lock_is_held_fails_with_lock_held(v2_root):
    with storage_lock(v2_root, exclusive=True), pytest.raises(LockHeldError):
        remove(open_storage(v2_root, writable=True), ["busybox"])
    assert (v2_root / v2paths.tag_dir("busybox", "latest")).exists()


def test_rm_deletes_only_what_the_shown_plan_named(v2_root: Path):
    shown = plan_rm_checked(open_reader(v2_root), ["busybox"])
    result = remove(open_storage(v2_root, writable=True), ["busybox", "centos:6.7"], shown=shown)
    assert result.plan.delete == shown.delete
    assert (v2_root / v2paths.tag_dir("centos", "6.7")).exists()


# -- what a removal drags along, and what keeps a manifest -----------------------------------
SSHD = EXPECTED_V2["manifests"]["sshd:latest"]
ARTIFACT = EXPECTED_V2["artifact"]["digest"]
UNTAGGED_BUSYBOX = EXPECTED_V2["untagged"]["busybox"][0]["digest"]


def test_rm_v2_of_an_index_drops_its_children_with_it(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), ["multi:latest"])
    children = {child["digest"] for child in MULTI["manifests"]}
    assert kinds(plan) == {("tag", "multi:latest"), ("manifest", f"multi@{MULTI['digest']}")} | {
        ("manifest", f"multi@{child}") for child in children
    }


def test_rm_v2_keeps_a_child_an_untagged_index_left_in_place_lists(v2_root):
    nested = put_blob(v2_root, index_of_indexes(MULTI["digest"], MULTI["size"]))
    put_link(v2_root, v2paths.revision_link("multi", nested), nested)
    plan = plan_rm_checked(open_reader(v2_root), ["multi:latest"])
    assert kinds(plan) == {("tag", "multi:latest")}
    assert f"multi@{nested} (an untagged index listing it)" in plan.notes[0]


def test_rm_v2_drops_the_referrers_of_a_removed_manifest(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), ["sshd:latest"])
    assert kinds(plan) == {
        ("tag", "sshd:latest"),
        ("manifest", f"sshd@{SSHD['digest']}"),
        ("manifest", f"sshd@{ARTIFACT}"),
    }


def test_rm_v2_a_referrer_removed_by_digest_keeps_its_subject(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), [f"sshd@{ARTIFACT}"])
    assert kinds(plan) == {("manifest", f"sshd@{ARTIFACT}")}


def test_rm_v2_leaves_untagged_manifests_it_was_not_asked_about(v2_root):
    plan = plan_rm_checked(open_reader(v2_root), ["busybox"])
    assert ("manifest", f"busybox@{UNTAGGED_BUSYBOX}") not in kinds(plan)
    assert ("manifest", f"busybox@{BUSYBOX['digest']}") in kinds(plan)


# -- globs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "tags"),
    [("centos:*", {"6.7", "httpd"}), ("centos:6*", {"6.7"}), ("centos:h?tpd", {"httpd"})],
)
def test_rm_glob_picks_the_matching_tags_of_the_repository(v2_root, pattern, tags):
    plan = plan_rm_checked(open_reader(v2_root), [pattern])
    assert {i for k, i in kinds(plan) if k == "tag"} == {f"centos:{t}" for t in tags}


def test_rm_glob_on_v1_goes_through_the_library_name(v1_root):
    plan = plan_rm(open_reader(v1_root), ["centos:*"])
    assert {e.id for e in plan.delete if e.kind == "tag"} == {
        "library/centos:6.7",
        "library/centos:httpd",
    }


def test_rm_glob_that_matches_nothing_is_refused(v2_root):
    with pytest.raises(NoMatchError, match="no tag of centos matches 'pr-\\*'"):
        plan_rm_checked(open_reader(v2_root), ["centos:pr-*"])


# -- the undo journal ------------------------------------------------------------------------
def test_rm_v2_writes_the_journal_of_what_it_removed_before_deleting(v2_root):
    result = remove(open_storage(v2_root, writable=True), ["sshd"])
    assert result.journal is not None
    written = journal.read(FilesystemDriver(v2_root), result.journal.name)
    assert written.command == "rm" and written.layout == "v2"
    assert set(written.removed) == {
        Removed("sshd", "latest", SSHD["digest"]),
        Removed("sshd", None, SSHD["digest"]),
        Removed("sshd", None, ARTIFACT),
    }


def test_rm_keep_manifest_journals_the_tags_only(v2_root):
    result = remove(open_storage(v2_root, writable=True), ["centos:*"], manifest=False)
    assert result.journal is not None
    assert {(r.tag, r.digest) for r in result.journal.removed} == {
        ("6.7", CENTOS67["digest"]),
        ("httpd", EXPECTED_V2["manifests"]["centos:httpd"]["digest"]),
    }


def test_rm_v1_journals_the_image_and_the_tag_metadata(v1_root):
    tag_json = (v1_root / v1paths.tag_json("library/busybox", "latest")).read_text()
    repo_json = (v1_root / v1paths.repository_json("library/busybox")).read_text()
    image = (v1_root / v1paths.tag_file("library/busybox", "latest")).read_text()
    result = remove(open_storage(v1_root, writable=True), ["busybox"])
    assert result.journal is not None
    assert journal.last(FilesystemDriver(v1_root)).removed == (
        Removed("library/busybox", "latest", image, tag_json, repo_json),
    )


def test_a_dry_plan_and_a_refused_rm_write_no_journal(v2_root):
    plan_rm(open_reader(v2_root), ["busybox"])
    with pytest.raises(NoMatchError):
        remove(open_storage(v2_root, writable=True), ["busybox:zz*"])
    assert not (v2_root / journal.FOLDER).exists()


def test_rm_in_a_bucket_removes_the_manifest_and_journals_it_there(v2_root, rgw, tmp_path):
    config = bucket_copy(rgw, v2_root, tmp_path)
    store = open_storage(config=config, writable=True)
    result = remove(store, ["centos6"])
    digest = EXPECTED_V2["manifests"]["centos6:latest"]["digest"]
    assert kinds(result.plan) == {("tag", "centos6:latest"), ("manifest", f"centos6@{digest}")}
    fresh = open_storage(config=config)
    assert journal.last(fresh.driver).removed == (
        Removed("centos6", "latest", digest),
        Removed("centos6", None, digest),
    )
    assert not fresh.reader.has_manifest("centos6", digest)
    swept = {e.id for e in plan_gc(fresh.reader, GcOptions(grace=0)).delete}
    assert digest in swept
