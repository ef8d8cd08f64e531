"""gc against the reference: Debian's `docker-registry garbage-collect` (2.8.2) and `serve`.

`regtool gc --dry-run --grace 0` must select exactly the blobs 2.8.2 lists, on trees the
reference wrote and after manifest DELETEs through its API. Two differences are by design
and tested as such: regtool marks through an index to any depth (2.8.2 stops after one
level, #3178, so it sweeps the layers of an index child whose revision is gone, or that is
untagged under -m), and with --delete-untagged regtool keeps artifacts whose `subject` is
a kept manifest (2.8.2 ignores `subject`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.ops.gc import GcOptions, collect_garbage, plan_gc
from regtool.ops.verify import verify
from tests.conftest import FIXTURES
from tests.support.refregistry import (
    http_request,
    pull_every_tag,
    reference_registry,
    run_reference_gc,
)

EXPECTED = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
MULTI = EXPECTED["manifests"]["multi:latest"]
CHILDREN = [child["digest"] for child in MULTI["manifests"]]
ARTIFACT = EXPECTED["artifact"]["digest"]
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def gc_config(root: Path) -> Path:
    config = root.parent / f"{root.name}-gc.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {json.dumps(str(root))}\n"
    )
    return config


def ours(root: Path, delete_untagged: bool = False) -> set[str]:
    options = GcOptions(grace=0, delete_untagged=delete_untagged)
    plan = plan_gc(open_reader(root), options)
    assert not plan.problems, plan.problems
    return {entry.id for entry in plan.delete if entry.kind == "blob"}


def theirs(root: Path, delete_untagged: bool = False) -> set[str]:
    found, _ = run_reference_gc(gc_config(root), dry_run=True, delete_untagged=delete_untagged)
    return found


def references(root: Path, digest: str) -> set[str]:
    """Config and layers of an image manifest stored in root."""
    doc = json.loads((root / v2paths.blob_data(digest)).read_bytes())
    return {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}


def delete_manifests(root: Path, targets: list[tuple[str, str]]) -> None:
    """DELETE /v2/<repo>/manifests/<digest> through the reference registry."""
    with reference_registry(root) as registry:
        for repository, digest in targets:
            status, body, _ = http_request(
                "DELETE", f"{registry.url}/v2/{repository}/manifests/{digest}"
            )
            assert status == 202, (status, body)


def child_refs() -> set[str]:
    root = FIXTURES / "v2"
    return set().union(*(references(root, child) for child in CHILDREN))


def artifact_blobs() -> set[str]:
    return {ARTIFACT} | references(FIXTURES / "v2", ARTIFACT)


# scenario: (manifests to DELETE, -m difference regtool keeps that 2.8.2 sweeps)
SCENARIOS = {
    "untouched": ([], lambda: child_refs() | artifact_blobs()),
    "two-tagged-deleted": (
        [
            ("busybox", EXPECTED["manifests"]["busybox:latest"]["digest"]),
            ("centos", EXPECTED["manifests"]["centos:6.7"]["digest"]),
        ],
        lambda: child_refs() | artifact_blobs(),
    ),
    "subject-deleted": (
        [("sshd", EXPECTED["artifact"]["subject"]["digest"])],
        child_refs,
    ),
    "index-deleted": ([("multi", MULTI["digest"])], artifact_blobs),
}


@pytest.fixture(scope="module")
def scenario_roots(tmp_path_factory) -> dict[str, Path]:
    """One copy of the fixture per scenario, with its DELETEs done by the reference."""
    import shutil

    roots = {}
    for name, (targets, _) in SCENARIOS.items():
        root = tmp_path_factory.mktemp(name) / "v2"
        shutil.copytree(FIXTURES / "v2", root, symlinks=True)
        if targets:
            delete_manifests(root, targets)
        roots[name] = root
    return roots


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_dry_run_selects_the_reference_blob_set(scenario_roots, scenario):
    root = scenario_roots[scenario]
    assert ours(root) == theirs(root)


def test_parity_is_not_vacuous_after_deletes(scenario_roots):
    busybox = EXPECTED["manifests"]["busybox:latest"]
    assert busybox["digest"] in ours(scenario_roots["two-tagged-deleted"])
    assert ARTIFACT not in ours(scenario_roots["subject-deleted"])  # still a revision


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_delete_untagged_differs_from_2_8_2_only_by_design(scenario_roots, scenario):
    root = scenario_roots[scenario]
    mine, reference = ours(root, True), theirs(root, True)
    kept_by_design = SCENARIOS[scenario][1]()
    assert mine <= reference
    assert reference - mine == kept_by_design & reference
    assert kept_by_design & reference  # the difference really shows in every scenario


def test_deleted_child_of_tagged_index_keeps_its_layers_unlike_2_8_2(tmp_path):
    import shutil

    root = tmp_path / "v2"
    shutil.copytree(FIXTURES / "v2", root, symlinks=True)
    arm = CHILDREN[1]
    delete_manifests(root, [("multi", arm)])
    mine, reference = ours(root), theirs(root)
    arm_refs = references(root, arm)
    assert mine <= reference
    assert reference - mine == arm_refs - references(root, CHILDREN[0])  # 2.8.2 loses them
    assert reference - mine  # and that is not nothing
    assert arm not in reference  # both keep the child's manifest blob: the index names it


@pytest.mark.parametrize("delete_untagged", [False, True])
def test_parity_on_the_small_synthetic_tree(tmp_path, delete_untagged):
    root = tmp_path / "syn"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "mksynthetic.py"), "--small", "--out", str(root)],
        check=True,
        capture_output=True,
    )
    mine = ours(root, delete_untagged)
    assert mine and mine == theirs(root, delete_untagged)


def test_after_a_real_gc_the_reference_serves_every_remaining_tag(tmp_path):
    import shutil

    root = tmp_path / "v2"
    shutil.copytree(FIXTURES / "v2", root, symlinks=True)
    gone = "centos:6.7"
    delete_manifests(root, [("centos", EXPECTED["manifests"][gone]["digest"])])
    result = collect_garbage(
        open_storage(root, writable=True), GcOptions(grace=0, delete_untagged=True)
    )
    kinds = {entry.kind for entry in result.plan.delete}
    assert {"blob", "manifest", "link"} <= kinds and result.failed == ()
    report = verify(open_reader(root), jobs=2)
    assert report.errors == 0, report.problems
    with reference_registry(root) as registry:
        pull_every_tag(registry.host, EXPECTED["manifests"], tmp_path / "pulled", skip=gone)
