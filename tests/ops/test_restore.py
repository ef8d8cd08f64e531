"""restore: rm's journal brings tags and manifests back while their blobs are stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool.errors import UsageError
from regtool.layout import journal
from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcOptions, collect_garbage
from regtool.ops.ls import list_tags
from regtool.ops.restore import find_journal, plan_restore, restore
from regtool.ops.rm import remove
from tests.conftest import FIXTURES, snapshot
from tests.support.refregistry import pull_every_tag, reference_registry
from tests.support.rgw import bucket_copy
from tests.support.v2tree import put_link

EXPECTED = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
MANIFESTS = EXPECTED["manifests"]
EVERYTHING = ["busybox", "centos:*", "centos6", "gjkdhr/centos:httpd", "multi", "sshd"]


def ids(items) -> set[str]:
    return {item.id for item in items}


def links(root: Path) -> set[str]:
    """Every tag and revision link of the tree (what rm and restore touch), without a
    tag's `index/` history of what it pointed at before (not journaled)."""
    base = root / v2paths.REPOSITORIES
    found = {str(p.relative_to(root)) for p in base.rglob("link")}
    return {key for key in found if "/_layers/" not in key and "/index/" not in key}


def test_rm_everything_then_restore_gives_back_the_tree_the_reference_serves(v2_root, tmp_path):
    before_rows, before_links = list_tags(open_reader(v2_root)), links(v2_root)
    removed = remove(open_storage(v2_root, writable=True), EVERYTHING)
    assert removed.journal is not None and list_tags(open_reader(v2_root)) == ()
    result = restore(open_storage(v2_root, writable=True), None)
    assert result.failed == () and result.plan.lost == () and result.plan.drift == ()
    assert ids(result.plan.restore) == {
        f"{r.repository}:{r.tag}" if r.tag else f"{r.repository}@{r.digest}"
        for r in removed.journal.removed
    }
    assert list_tags(open_reader(v2_root)) == before_rows
    assert links(v2_root) == before_links
    with reference_registry(v2_root) as registry:
        pull_every_tag(registry.host, MANIFESTS, tmp_path / "pulled")


def test_restore_twice_writes_nothing_the_second_time(v2_root):
    remove(open_storage(v2_root, writable=True), ["sshd", "multi"])
    restore(open_storage(v2_root, writable=True), None)
    before = snapshot(v2_root)
    again = restore(open_storage(v2_root, writable=True), None)
    assert again.plan.restore == () and len(again.plan.present) == 7
    assert snapshot(v2_root) == before
    assert journal.names(open_storage(v2_root).driver)  # the journal is kept


def test_after_gc_the_swept_ones_are_lost_and_the_rest_comes_back(v2_root):
    store = open_storage(v2_root, writable=True)
    remove(store, ["centos:httpd"])
    collect_garbage(store, GcOptions(grace=0))
    remove(store, ["centos6"], manifest=False)
    collect_garbage(store, GcOptions(grace=0))  # a plain gc keeps centos6's manifest
    first, second = journal.names(store.driver)
    lost = plan_restore(store.reread(), find_journal(store.driver, first))
    assert lost.restore == () and ids(lost.lost) == {
        "centos:httpd",
        f"centos@{MANIFESTS['centos:httpd']['digest']}",
    }
    assert all("was swept by gc" in item.reason for item in lost.lost)
    back = restore(store, second)
    assert ids(back.plan.restore) == {"centos6:latest"} and back.plan.lost == ()


def test_a_tag_that_moved_since_is_left_alone_and_reported(v2_root):
    store = open_storage(v2_root, writable=True)
    remove(store, ["busybox"])
    other = EXPECTED["untagged"]["busybox"][0]["digest"]
    put_link(v2_root, v2paths.tag_current_link("busybox", "latest"), other)
    result = restore(store, None)
    assert ids(result.plan.drift) == {"busybox:latest"}
    assert other in result.plan.drift[0].reason
    assert ids(result.plan.restore) == {f"busybox@{MANIFESTS['busybox:latest']['digest']}"}
    assert open_reader(v2_root).tags("busybox")[0].digest == other


def test_restore_deletes_nothing_and_a_dry_plan_writes_nothing(v2_root):
    remove(open_storage(v2_root, writable=True), ["centos:*"])
    before = snapshot(v2_root)
    plan = plan_restore(open_reader(v2_root), journal.last(open_storage(v2_root).driver))
    assert len(plan.restore) == 4
    assert snapshot(v2_root) == before


def test_restore_refuses_a_journal_of_the_other_layout(v1_root, v2_root):
    remove(open_storage(v1_root, writable=True), ["busybox"])
    name = journal.names(open_storage(v1_root).driver)[0]
    (v2_root / journal.FOLDER).mkdir(parents=True)
    (v2_root / journal.path_of(name)).write_bytes((v1_root / journal.path_of(name)).read_bytes())
    with pytest.raises(UsageError, match="v1 storage; this one is v2"):
        restore(open_storage(v2_root, writable=True), name)


# -- v1 ---------------------------------------------------------------------------------------
def test_v1_rm_then_restore_gives_back_the_same_files(v1_root):
    before = snapshot(v1_root)
    remove(open_storage(v1_root, writable=True), ["busybox", "centos:6.7"])
    result = restore(open_storage(v1_root, writable=True), None)
    assert ids(result.plan.restore) == {"library/busybox:latest", "library/centos:6.7"}
    after = {k: v[0::2] for k, v in snapshot(v1_root).items() if not k.startswith(".regtool")}
    assert after == {k: v[0::2] for k, v in before.items()}


def test_v1_rm_gc_restore_reports_the_swept_image(v1_root):
    store = open_storage(v1_root, writable=True)
    remove(store, ["busybox"])
    collect_garbage(store, GcOptions(grace=0))
    result = restore(store, None)
    assert result.plan.restore == () and ids(result.plan.lost) == {"library/busybox:latest"}
    assert "was swept by gc" in result.plan.lost[0].reason


# -- an S3 bucket -----------------------------------------------------------------------------
def test_rm_and_restore_in_a_bucket(v2_root, rgw, tmp_path):
    config = bucket_copy(rgw, v2_root, tmp_path)
    before = list_tags(open_storage(config=config).reader)
    remove(open_storage(config=config, writable=True), ["multi", "sshd"])
    assert len(list_tags(open_storage(config=config).reader)) == len(before) - 2
    result = restore(open_storage(config=config, writable=True), None)
    assert len(result.plan.restore) == 7 and result.plan.lost == ()
    assert list_tags(open_storage(config=config).reader) == before
    again = restore(open_storage(config=config, writable=True), None)
    assert again.plan.restore == ()
