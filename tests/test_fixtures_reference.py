"""The fixture trees against their builders and against the reference registry.

* ``tests/fixtures/v1`` must be exactly what ``scripts/mkfixtures_v1.py`` builds.
* ``tests/fixtures/v2`` (always served from a copy) must answer as recorded in its
  ``EXPECTED.json``, pull cleanly with skopeo, and be garbage-collected by the
  reference ``docker-registry garbage-collect`` as computed below.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import skopeo_copy_all
from tests.support.refregistry import (
    ALL_MANIFEST_TYPES,
    RunningRegistry,
    http_json,
    reference_registry,
    run_reference_gc,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
V1_DIR = REPO_ROOT / "tests" / "fixtures" / "v1"
V2_DIR = REPO_ROOT / "tests" / "fixtures" / "v2"
V1_EXPECTED = json.loads((V1_DIR / "EXPECTED.json").read_text())
V2_EXPECTED = json.loads((V2_DIR / "EXPECTED.json").read_text())
ACCEPT_ALL = ", ".join(ALL_MANIFEST_TYPES)


def tree_snapshot(root: Path) -> dict[str, bytes | None]:
    """Relative path -> file bytes (None for directories)."""
    return {
        path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# v1


def test_v1_fixture_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "mkfixtures_v1.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    rebuilt, stored = tree_snapshot(out), tree_snapshot(V1_DIR)
    assert sorted(rebuilt) == sorted(stored)
    assert [p for p in stored if rebuilt[p] != stored[p]] == []


def test_v1_expected_matches_tree() -> None:
    images = V1_DIR / "images"
    for entry in V1_EXPECTED["tags"]:
        repo = V1_DIR / "repositories" / entry["repository"]
        assert (repo / f"tag_{entry['tag']}").read_bytes() == entry["image"].encode()
        ancestry = json.loads((images / entry["image"] / "ancestry").read_bytes())
        assert ancestry == entry["ancestry"]
        sizes = [(images / image / "layer").stat().st_size for image in ancestry]
        assert sum(sizes) == entry["layer_bytes"]
    listed = {path.name for path in images.iterdir()}
    assert listed == set(V1_EXPECTED["images"])
    unreachable = listed - set(V1_EXPECTED["live_images"])
    assert unreachable == set(V1_EXPECTED["orphans"]) | set(V1_EXPECTED["in_progress"])
    for image in V1_EXPECTED["in_progress"]:
        assert (images / image / "_inprogress").read_bytes() == b"true"
        assert not (images / image / "layer").exists()


def test_v1_and_v2_share_layer_bytes() -> None:
    """centos:6.7 has the same gzip layers in both fixtures (base first in v2)."""
    entry = next(
        e for e in V1_EXPECTED["tags"] if e["repository"] == "library/centos" and e["tag"] == "6.7"
    )
    v1_layers = [
        sha256_file(V1_DIR / "images" / image / "layer") for image in reversed(entry["ancestry"])
    ]
    assert v1_layers == V2_EXPECTED["manifests"]["centos:6.7"]["layers"]


# ---------------------------------------------------------------------------
# v2 served by the reference registry


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    before = tree_snapshot(V2_DIR)
    root = tmp_path_factory.mktemp("v2") / "root"
    shutil.copytree(V2_DIR, root)
    with reference_registry(root, readonly=True) as registry:
        yield registry
    assert tree_snapshot(V2_DIR) == before, "tests/fixtures/v2 was modified"


def get_manifest(registry: RunningRegistry, repo: str, ref: str) -> tuple[str, str, dict]:
    status, doc, headers = http_json(f"{registry.url}/v2/{repo}/manifests/{ref}", accept=ACCEPT_ALL)
    assert status == 200, (repo, ref, doc)
    return headers["Docker-Content-Digest"], headers.get_content_type(), doc


def references(doc: dict) -> set[str]:
    """What 2.8.2 GC marks for a manifest: config + layers, or an index's children."""
    if "manifests" in doc:
        return {child["digest"] for child in doc["manifests"]}
    return {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}


def test_v2_catalog_and_tags(served: RunningRegistry) -> None:
    status, doc, _ = http_json(f"{served.url}/v2/_catalog")
    assert status == 200
    assert doc["repositories"] == V2_EXPECTED["catalog"]
    for repo, tags in V2_EXPECTED["tags"].items():
        status, doc, _ = http_json(f"{served.url}/v2/{repo}/tags/list")
        assert status == 200
        assert sorted(doc["tags"]) == tags  # 2.8.2 lists tags in directory order


@pytest.mark.parametrize("name", sorted(V2_EXPECTED["manifests"]))
def test_v2_manifest_digests(served: RunningRegistry, name: str) -> None:
    repo, tag = name.rsplit(":", 1)
    found, media_type, _ = get_manifest(served, repo, tag)
    expected = V2_EXPECTED["manifests"][name]
    assert (found, media_type) == (expected["digest"], expected["media_type"])


def test_v2_untagged_manifests_and_artifact(served: RunningRegistry) -> None:
    for repo, entries in V2_EXPECTED["untagged"].items():
        for entry in entries:
            assert get_manifest(served, repo, entry["digest"])[0] == entry["digest"]
    artifact = V2_EXPECTED["artifact"]
    _, _, doc = get_manifest(served, artifact["repository"], artifact["digest"])
    assert doc["artifactType"] == artifact["artifact_type"]
    assert doc["subject"] == artifact["subject"]
    subject_of = V2_EXPECTED["manifests"][f"{artifact['repository']}:{artifact['subject_tag']}"]
    assert doc["subject"]["digest"] == subject_of["digest"]


@pytest.mark.parametrize("name", sorted(V2_EXPECTED["manifests"]))
def test_v2_skopeo_pulls_every_tag(served: RunningRegistry, tmp_path: Path, name: str) -> None:
    skopeo_copy_all(f"docker://{served.host}/{name}", f"oci:{tmp_path / 'layout'}:pulled")
    assert (tmp_path / "layout" / "index.json").is_file()


def test_v2_reference_gc_keeps_everything_without_m(served: RunningRegistry) -> None:
    deletable, output = run_reference_gc(served.config, dry_run=True)
    assert deletable == set(), output
    assert "0 blobs and 0 manifests eligible for deletion" in output


def test_v2_reference_gc_delete_untagged(served: RunningRegistry) -> None:
    """With -m, 2.8.2 sweeps what only untagged manifests reference.

    Untagged revisions are the previous busybox:latest, the sshd artifact and,
    because 2.8.2 marks only one level (distribution #3178), the two children
    of multi:latest: their manifest blobs survive (the index marks them) but
    their configs and layers do not.
    """
    marked: set[str] = set()
    for name, entry in V2_EXPECTED["manifests"].items():
        _, _, doc = get_manifest(served, *name.rsplit(":", 1))
        marked |= {entry["digest"], *references(doc)}

    def own(repo: str, digest: str) -> set[str]:
        _, _, doc = get_manifest(served, repo, digest)
        return ({digest} | references(doc)) - marked

    previous = V2_EXPECTED["untagged"]["busybox"][0]["digest"]
    artifact = V2_EXPECTED["artifact"]["digest"]
    children = [c["digest"] for c in V2_EXPECTED["manifests"]["multi:latest"]["manifests"]]
    previous_own = own("busybox", previous)
    artifact_own = own("sshd", artifact)
    children_own = set().union(*(own("multi", child) for child in children))

    assert previous in previous_own and len(previous_own) >= 2  # manifest + config at least
    assert len(artifact_own) == 3  # manifest, empty config, sbom layer: nothing shared
    assert children_own and not children_own & set(children)

    deletable, output = run_reference_gc(served.config, dry_run=True, delete_untagged=True)
    assert deletable == previous_own | artifact_own | children_own, output
    for digest in (previous, artifact, *children):
        assert f"manifest eligible for deletion: {digest}" in output
