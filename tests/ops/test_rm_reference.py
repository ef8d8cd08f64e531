"""rm frees what it promises, with the reference registry as the oracle.

For every tag of the fixture (a tree the reference registry wrote: images sharing layers,
a multi-arch index, an artifact with a `subject`, an untagged manifest): on one copy,
`regtool rm TAG` then a real `gc --grace 0`; on another, the reference's own DELETE of the
same manifests through its API (DELETE /v2/<name>/manifests/<digest>: the revision and
every tag pointing at it) and its `garbage-collect`. The blobs freed must be the same, and
equal the EXCLUSIVE bytes `ls` showed plus the removed manifests' blobs (and an artifact's
own blobs, which are no tag's). EXCLUSIVE leaves out what an untagged manifest still holds
(busybox's layer here): a plain gc keeps it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcOptions, collect_garbage, plan_gc
from regtool.ops.ls import list_tags
from regtool.ops.rm import remove
from tests.conftest import FIXTURES
from tests.ops.test_gc_reference import delete_manifests, theirs

EXPECTED = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
MANIFESTS = EXPECTED["manifests"]
ARTIFACT = EXPECTED["artifact"]["digest"]
UNTAGGED_BUSYBOX = EXPECTED["untagged"]["busybox"][0]


def manifests_removed(name: str) -> set[str]:
    """What rm of the tag `name` removes, from EXPECTED.json alone: the manifest, an index's
    children, and the artifact whose subject it is."""
    entry = MANIFESTS[name]
    found = {entry["digest"]}
    found |= {child["digest"] for child in entry.get("manifests", [])}
    if EXPECTED["artifact"]["subject"]["digest"] == entry["digest"]:
        found.add(ARTIFACT)
    return found


def blob_size(root: Path, digest: str) -> int:
    return (root / v2paths.blob_data(digest)).stat().st_size


def referenced(root: Path, digest: str) -> set[str]:
    doc = json.loads((root / v2paths.blob_data(digest)).read_bytes())
    return {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_rm_then_gc_frees_what_the_reference_frees_after_its_delete(tmp_path, name):
    repository, _, tag = name.rpartition(":")
    ours_root = shutil.copytree(FIXTURES / "v2", tmp_path / "ours", symlinks=True)
    theirs_root = shutil.copytree(FIXTURES / "v2", tmp_path / "theirs", symlinks=True)
    assert not plan_gc(open_reader(ours_root), GcOptions(grace=0)).delete  # no garbage yet
    row = next(
        r
        for r in list_tags(open_reader(ours_root))
        if (r.repository, r.tag)
        == (
            repository,
            tag,
        )
    )

    removed = remove(open_storage(ours_root, writable=True), [name])
    dropped = {e.id.partition("@")[2] for e in removed.plan.delete if e.kind == "manifest"}
    assert dropped == manifests_removed(name)
    swept = collect_garbage(open_storage(ours_root, writable=True), GcOptions(grace=0))
    freed = {e.id: e.size for e in swept.plan.delete if e.kind == "blob"}

    delete_manifests(theirs_root, [(repository, digest) for digest in sorted(dropped)])
    assert set(freed) == theirs(theirs_root)

    expected = row.exclusive + sum(blob_size(theirs_root, d) for d in dropped)
    if ARTIFACT in dropped:  # the artifact's own config and layers are no tag's blobs
        expected += sum(blob_size(theirs_root, d) for d in referenced(theirs_root, ARTIFACT))
    assert sum(freed.values()) == expected
