"""why: `garbage` agrees with gc's plan (`gc --delete-untagged --grace 0`) for every blob,
and an object is kept exactly when some tag's chain reaches it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.why import explain
from tests.conftest import FIXTURES

GARBAGE_FLAGS = GcOptions(grace=0, delete_untagged=True)


def blobs_of(root: Path) -> list[str]:
    base = root / v2paths.BLOBS / "sha256"
    return sorted(f"sha256:{p.name}" for p in base.glob("*/*") if (p / "data").is_file())


@pytest.fixture(params=["as-pushed", "tags-removed"])
def tree(request, tmp_path) -> tuple[Path, str]:
    root = tmp_path / "v2"
    shutil.copytree(FIXTURES / "v2", root, symlinks=True)
    if request.param == "tags-removed":  # untagged manifests, an index and a referrer subject
        for repository, tag in (("busybox", "latest"), ("multi", "latest"), ("sshd", "latest")):
            shutil.rmtree(root / v2paths.tag_dir(repository, tag))
    return root, request.param


def test_garbage_is_what_gc_deletes_and_kept_by_says_why_not(tree):
    tree, scenario = tree
    reader = open_storage(tree).reader
    doomed = {e.id for e in plan_gc(reader, GARBAGE_FLAGS).delete if e.kind == "blob"}
    answers = {digest: explain(open_storage(tree).reader, digest) for digest in blobs_of(tree)}
    assert {d for d, why in answers.items() if why.garbage} == doomed
    for digest, why in answers.items():
        assert why.garbage == (not why.kept_by), (digest, why)
    if scenario == "tags-removed":
        assert len(doomed) > 10  # not vacuous
    assert any(not why.garbage for why in answers.values())


def test_a_referrer_and_an_index_child_are_explained_hop_by_hop(v2_expected):
    reader = open_storage(FIXTURES / "v2").reader
    artifact = v2_expected["artifact"]["digest"]
    why = explain(reader, artifact)
    subject = v2_expected["artifact"]["subject"]["digest"]
    assert [k.via for k in why.kept_by] == [
        ("tag sshd:latest", f"manifest {subject}", f"referrer {artifact}")
    ]
    multi = v2_expected["manifests"]["multi:latest"]
    child = multi["manifests"][0]["digest"]
    via = explain(reader, child).kept_by[0].via
    assert via == ("tag multi:latest", f"index {multi['digest']}", f"manifest {child}")


def test_v1_images_garbage_matches_gc(tmp_path):
    root = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", root, symlinks=True)
    reader = open_storage(root).reader
    doomed = {e.id for e in plan_gc(reader, GcOptions(grace=0)).delete}
    images = sorted(p.name for p in (root / "images").iterdir())
    for image in images:
        why = explain(open_storage(root).reader, image)
        assert why.kind == "image" and why.garbage == (image in doomed) == (not why.kept_by)
    assert doomed
