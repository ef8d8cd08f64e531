"""prune --policy: plans gc's sweep of the tree after the removals, and frees exactly that.

Oracles: the reference registry (images pushed through its API, the manifests of the tags
prune removes deleted through its API, then its own `garbage-collect`), regtool's gc on
the tree after prune (nothing left to free), and gc_v1 after the same tags are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from regtool.layout import journal
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.model.policy import PolicyError
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.policy_file import load_policies
from regtool.ops.prune import apply_prune, plan_prune
from tests.conftest import FIXTURES
from tests.support.refregistry import http_request, reference_registry, run_reference_gc
from tests.support.rgw import bucket_copy

NOW = 1_900_000_000.0
DAY = 86400.0
OPTIONS = GcOptions(grace=0, now=NOW)


def policy_file(folder: Path, text: str) -> Any:
    path = folder / "policy.yml"
    path.write_text(text)
    return load_policies(path)


def blob_ids(plan: Any) -> set[str]:
    return {entry.id for entry in plan.delete if entry.kind == "blob"}


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.name == ".regtool.lock":
            continue  # the writers' lock, taken (and left, empty) by every writing command
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


# -- images pushed through the reference registry ------------------------------------------
def push_image(url: str, repository: str, tag: str, seed: str) -> str:
    """One distinct image (config + one layer) pushed by tag; returns the manifest digest."""
    layer = f"layer of {seed}".encode() * 50
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    for data in (layer, config):
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        status, body, headers = http_request("POST", f"{url}/v2/{repository}/blobs/uploads/")
        assert status == 202, (status, body)
        location = headers["Location"]
        location = location if location.startswith("http") else url + location
        joiner = "&" if "?" in location else "?"
        status, body, _ = http_request(
            "PUT",
            f"{location}{joiner}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert status == 201, (status, body)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": f"sha256:{hashlib.sha256(config).hexdigest()}",
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": f"sha256:{hashlib.sha256(layer).hexdigest()}",
                }
            ],
        }
    ).encode()
    status, body, _ = http_request(
        "PUT",
        f"{url}/v2/{repository}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert status == 201, (status, body)
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


# tag -> days before NOW it was pushed
APP_TAGS = {"latest": 0, "v1": 40, "v2": 30, "v3": 20, "v4": 5, "v5": 1, "pr-1": 50, "pr-2": 2}
POLICY = """\
policies:
  - repositories: ["app"]
    keep:
      - patterns: ["^latest$"]
      - patterns: ["^v[0-9]+$"]
        most_recent: 2
      - patterns: ["^v[0-9]+$"]
        pushed_within: 25d
"""
EXPECTED_KEEP = {
    "app:latest": "policy 1 keep 1: patterns ^latest$",
    "app:v5": "policy 1 keep 2: most_recent 2",
    "app:v4": "policy 1 keep 2: most_recent 2",
    "app:v3": "policy 1 keep 3: pushed_within 25d",
}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A tree the reference registry wrote: app with 8 distinct images, other untouched;
    push times set on the tag links."""
    root = tmp_path_factory.mktemp("pushed") / "registry"
    root.mkdir()
    digests = {}
    with reference_registry(root) as registry:
        for tag in APP_TAGS:
            digests[tag] = push_image(registry.url, "app", tag, f"app-{tag}")
        digests["other:v1"] = push_image(registry.url, "other", "v1", "other-v1")
    for tag, days in APP_TAGS.items():
        link = root / v2paths.tag_current_link("app", tag)
        os.utime(link, (NOW - days * DAY, NOW - days * DAY))
    return root, digests


def copy(root: Path, folder: Path) -> Path:
    target = folder / "copy"
    shutil.copytree(root, target, symlinks=True)
    return target


def test_plan_removes_what_no_rule_keeps_and_names_the_rule_of_each_kept_tag(pushed, tmp_path):
    root, digests = pushed
    plan = plan_prune(open_storage(root).reader, policy_file(tmp_path, POLICY), OPTIONS)
    assert {k.id: k.rule for k in plan.keep} == EXPECTED_KEEP
    assert {e.id for e in plan.tags} == {"app:v1", "app:v2", "app:pr-1", "app:pr-2"}
    manifests = {e.id for e in plan.delete if e.kind == "manifest"}
    assert manifests == {f"app@{digests[t]}" for t in ("v1", "v2", "pr-1", "pr-2")}
    assert [(r.repository, r.removed, r.kept) for r in plan.repos] == [("app", 4, 4)]
    assert plan.repos[0].removed_bytes == plan.bytes  # every freed blob was app's


def test_blobs_freed_are_what_the_reference_gc_frees_after_the_same_deletes(pushed, tmp_path):
    root, digests = pushed
    plan = plan_prune(open_storage(root).reader, policy_file(tmp_path, POLICY), OPTIONS)
    oracle = copy(root, tmp_path)
    with reference_registry(oracle) as registry:
        for tag in ("v1", "v2", "pr-1", "pr-2"):
            status, body, _ = http_request(
                "DELETE", f"{registry.url}/v2/app/manifests/{digests[tag]}"
            )
            assert status == 202, (status, body)
    config = tmp_path / "gc.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {json.dumps(str(oracle))}\n"
    )
    theirs, _ = run_reference_gc(config, dry_run=True)
    assert blob_ids(plan) == theirs
    assert len(theirs) == 4 * 3  # manifest, config and layer of each removed image


def test_real_run_frees_the_dry_run_bytes_journals_and_leaves_nothing_for_gc(pushed, tmp_path):
    root = copy(pushed[0], tmp_path)
    policies = policy_file(tmp_path, POLICY)
    store = open_storage(root, writable=True)
    shown = plan_prune(store.reader, policies, OPTIONS)
    result = apply_prune(store, policies, OPTIONS, shown=shown)
    assert result.plan.bytes == shown.bytes > 0
    assert {(e.kind, e.path) for e in result.plan.delete} == {
        (e.kind, e.path) for e in shown.delete
    }
    assert not result.skipped and not result.failed and not result.moved
    after = open_storage(root)
    assert sorted(link.tag for link in after.reader.tags("app")) == ["latest", "v3", "v4", "v5"]
    assert plan_gc(after.reader, GcOptions(grace=0, delete_untagged=True)).delete == ()
    written = journal.read(after.driver, result.journal)
    assert written.command == "prune"
    assert {(r.tag, r.digest) for r in written.removed if r.tag} == {
        (t, pushed[1][t]) for t in ("v1", "v2", "pr-1", "pr-2")
    }
    assert {r.digest for r in written.removed if r.tag is None} == {
        pushed[1][t] for t in ("v1", "v2", "pr-1", "pr-2")
    }


def test_a_tag_moved_after_the_plan_is_left_alone_with_what_it_reaches(pushed, tmp_path):
    root = copy(pushed[0], tmp_path)
    digests = pushed[1]
    policies = policy_file(tmp_path, POLICY)
    store = open_storage(root, writable=True)
    shown = plan_prune(store.reader, policies, OPTIONS)
    link = root / v2paths.tag_current_link("app", "pr-1")
    link.write_text(digests["v2"])  # pr-1 now names v2's image, which the plan drops
    os.utime(link, (NOW - 60 * DAY, NOW - 60 * DAY))  # and still looks old
    result = apply_prune(store, policies, OPTIONS, shown=shown)
    assert result.moved == ("app:pr-1",)
    tags = sorted(link.tag for link in open_storage(root).reader.tags("app"))
    assert tags == ["latest", "pr-1", "v3", "v4", "v5"]
    deleted = {e.id for e in result.plan.delete}
    assert f"app@{digests['v2']}" not in deleted  # pr-1 still needs it
    assert f"app@{digests['pr-1']}" not in deleted  # shown as dropped with pr-1: kept too
    assert (root / v2paths.revision_link("app", digests["v2"])).exists()


def test_removing_every_tag_without_allow_empty_is_refused_naming_the_line(pushed, tmp_path):
    root = copy(pushed[0], tmp_path)
    before = tree_hash(root)
    text = (
        "policies:\n  - repositories: [other]\n    keep: []\n"
        "  - repositories: [app]\n    keep:\n      - patterns: ['.*']\n"
    )
    policies = policy_file(tmp_path, text)
    with pytest.raises(PolicyError, match=r"^policy.yml:2: policy 1 would remove every tag of"):
        plan_prune(open_storage(root).reader, policies, OPTIONS)
    with pytest.raises(PolicyError):
        apply_prune(open_storage(root, writable=True), policies, OPTIONS)
    assert tree_hash(root) == before
    allowed = policy_file(tmp_path, text.replace("keep: []", "keep: []\n    allow_empty: true"))
    plan = plan_prune(open_storage(root).reader, allowed, OPTIONS)
    assert {e.id for e in plan.delete if e.kind in ("tag", "repository")} == {"other:v1", "other"}


def test_untagged_delete_drops_manifests_already_untagged_but_not_index_children(tmp_path):
    root = copy(FIXTURES / "v2", tmp_path)
    text = "policies:\n  - repositories: ['**']\n    keep:\n      - patterns: ['.*']\n"
    keep_all = plan_prune(open_storage(root).reader, policy_file(tmp_path, text), OPTIONS)
    assert keep_all.tags == () and not any(e.kind == "manifest" for e in keep_all.delete)
    assert blob_ids(keep_all) == blob_ids(plan_gc(open_storage(root).reader, OPTIONS))
    delete = policy_file(tmp_path, text + "    untagged: delete\n")
    plan = plan_prune(open_storage(root).reader, delete, OPTIONS)
    gc = plan_gc(open_storage(root).reader, GcOptions(grace=0, delete_untagged=True, now=NOW))
    assert {(e.kind, e.id) for e in plan.delete} == {(e.kind, e.id) for e in gc.delete}


def test_repositories_no_policy_names_are_untouched(tmp_path):
    root = copy(FIXTURES / "v2", tmp_path)
    text = "policies:\n  - repositories: ['nothing-*']\n    keep: []\n"
    plan = plan_prune(open_storage(root).reader, policy_file(tmp_path, text), OPTIONS)
    assert plan.tags == () and plan.keep == () and plan.repos == ()
    assert plan.sweep.delete == plan_gc(open_storage(root).reader, OPTIONS).delete


# -- v1 ------------------------------------------------------------------------------------
def test_v1_prune_frees_the_images_no_remaining_tag_reaches(tmp_path):
    root = copy(FIXTURES / "v1", tmp_path)
    text = "policies:\n  - repositories: ['centos']\n    keep:\n      - patterns: ['^http']\n"
    policies = policy_file(tmp_path, text)
    plan = plan_prune(open_storage(root).reader, policies, OPTIONS)
    assert {e.id for e in plan.tags if e.kind == "tag"} == {"library/centos:6.7"}
    assert [k.id for k in plan.keep] == ["library/centos:httpd"]
    oracle = copy(root, tmp_path / "oracle")
    (oracle / v1paths.tag_file("library/centos", "6.7")).unlink()
    expected = plan_gc(open_storage(oracle).reader, OPTIONS)
    assert {(e.kind, e.id) for e in plan.sweep.delete} == {(e.kind, e.id) for e in expected.delete}
    result = apply_prune(open_storage(root, writable=True), policies, OPTIONS, shown=plan)
    assert result.plan.bytes == plan.bytes
    assert plan_gc(open_storage(root).reader, OPTIONS).delete == ()
    written = journal.read(open_storage(root).driver, result.journal)
    assert [(r.repository, r.tag) for r in written.removed] == [("library/centos", "6.7")]


# -- an S3 bucket (push times are the objects' LastModified) ---------------------------------
def test_bucket_prune_by_most_recent_and_pushed_within(rgw, pushed, tmp_path):
    config = bucket_copy(rgw, pushed[0], tmp_path)
    # loaded in APP_TAGS order: later tags have later (or equal) LastModified, to the second
    everything = "policies:\n  - repositories: [app]\n    keep:\n      - patterns: ['.*']\n"
    within_big = everything.replace("'.*']", "'^v'] \n        pushed_within: 3650d")
    within_small = within_big.replace("3650d", "1s") + "    allow_empty: true\n"
    patterns = "policies:\n  - repositories: [app]\n    keep:\n      - patterns: ['^v[12]$']\n"
    cases = {everything: 8, within_big: 5, within_small: 0, patterns: 2}
    for text, kept in cases.items():
        policies = policy_file(tmp_path, text)
        later = GcOptions(grace=0, now=time.time() + 3600)  # the bucket's objects are older
        plan = plan_prune(open_storage(config=config).reader, policies, later)
        assert len(plan.keep) == kept, text
        local = plan_prune(open_storage(pushed[0]).reader, policies, GcOptions(grace=0))
        if text != within_small:  # local push times are years in the future of NOW - 1s
            assert blob_ids(plan) == blob_ids(local)
    policies = policy_file(tmp_path, patterns)
    store = open_storage(config=config, writable=True)
    shown = plan_prune(store.reader, policies, GcOptions(grace=0))
    result = apply_prune(store, policies, GcOptions(grace=0), shown=shown)
    assert result.plan.bytes == shown.bytes > 0
    after = open_storage(config=config)
    assert sorted(link.tag for link in after.reader.tags("app")) == ["v1", "v2"]
    assert plan_gc(after.reader, GcOptions(grace=0)).delete == ()
