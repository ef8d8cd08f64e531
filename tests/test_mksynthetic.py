"""Check scripts/mksynthetic.py against the reference garbage collector.

The Go registry (Debian's ``docker-registry`` 2.8.2) is run in ``--dry-run``
mode on the ``--small`` tree; the blobs it lists as eligible must be exactly the
blobs the generator says only the deleted manifests referenced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "mksynthetic.py"
GO_REGISTRY = os.environ.get("REGTOOL_GO_REGISTRY", "docker-registry")
ELIGIBLE = re.compile(r"^blob eligible for deletion: (sha256:[0-9a-f]{64})$", re.M)
SUMMARY = re.compile(r"^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible", re.M)
DIGEST = re.compile(rb"^sha256:[0-9a-f]{64}$")


def generate_small(root: Path, report: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--small", "--out", str(root), "--report", str(report)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "blobs=" in proc.stdout and "files=" in proc.stdout
    return json.loads(report.read_text())


def run_gc(root: Path, *flags: str) -> tuple[set[str], tuple[int, int, int], str]:
    config = root.parent / f"{root.name}-config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
    )
    proc = subprocess.run(
        [GO_REGISTRY, "garbage-collect", *flags, str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    # Only "Deleting ..." log lines go to stderr, and a dry run deletes nothing.
    assert proc.stderr.strip() == ""
    eligible = ELIGIBLE.findall(proc.stdout)
    assert len(eligible) == len(set(eligible))
    summary = SUMMARY.search(proc.stdout)
    assert summary is not None, proc.stdout[-500:]
    marked, blobs, manifests = (int(x) for x in summary.groups())
    return set(eligible), (marked, blobs, manifests), proc.stdout


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("synthetic")
    root = base / "root"
    report = generate_small(root, base / "report.json")
    return root, report


def deleted_blobs(report: dict) -> set[str]:
    out: set[str] = set()
    for entry in report["deleted"]:
        out.update([entry["manifest"], entry["config"], *entry["layers"]])
    return out


def test_small_report_shape(small_tree: tuple[Path, dict]) -> None:
    root, report = small_tree
    params = report["params"]
    assert (params["repos"], params["tags"]) == (50, 4)
    total = params["repos"] * params["tags"]
    assert len(report["deleted"]) == round(total * params["untagged_pct"] / 100) == 40
    orphaned = set(report["orphaned_blobs"])
    # The orphans are exactly manifest + config + 2 own layers of each deleted tag.
    assert orphaned == deleted_blobs(report)
    assert len(orphaned) == 4 * len(report["deleted"])
    v2 = root / "docker" / "registry" / "v2"
    data_files = list((v2 / "blobs").rglob("data"))
    assert len(data_files) == report["blobs"]
    assert sum(1 for p in root.rglob("*") if p.is_file()) == report["files"]
    for link in (v2 / "repositories").rglob("link"):
        assert DIGEST.match(link.read_bytes()), link
    for entry in report["deleted"]:
        repo = v2 / "repositories" / entry["repo"] / "_manifests"
        revision = repo / "revisions" / "sha256" / entry["manifest"][7:]
        assert revision.is_dir() and not any(revision.iterdir())
        assert not (repo / "tags" / entry["tag"]).exists()
        layers = repo.parent / "_layers" / "sha256"
        for digest in (entry["config"], *entry["layers"]):
            assert (layers / digest[7:] / "link").read_text() == digest

    repos = sorted(p.parent for p in (v2 / "repositories").glob("*/*/_layers"))
    assert len(repos) == params["repos"]
    for repo in repos:
        links = {p.read_text() for p in (repo / "_layers").rglob("link")}
        # 3 shared base layers plus config and 2 own layers per tag; never a manifest.
        assert len(links) == 3 + 3 * params["tags"]
        for current in (repo / "_manifests" / "tags").glob("*/current/link"):
            digest = current.read_text()
            assert digest not in links
            revision = repo / "_manifests" / "revisions" / "sha256" / digest[7:] / "link"
            assert revision.read_text() == digest
            index = current.parents[1] / "index" / "sha256" / digest[7:] / "link"
            assert index.read_text() == digest
            manifest = json.loads(
                (v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data").read_bytes()
            )
            refs = [manifest["config"], *manifest["layers"]]
            assert {d["digest"] for d in refs} <= links


def test_gc_dry_run_eligible_equals_orphaned(small_tree: tuple[Path, dict]) -> None:
    root, report = small_tree
    eligible, (marked, blobs, manifests), _ = run_gc(root, "--dry-run")
    assert eligible == set(report["orphaned_blobs"])
    orphaned = len(report["orphaned_blobs"])
    assert (marked, blobs, manifests) == (report["blobs"] - orphaned, orphaned, 0)


def test_gc_delete_untagged_dry_run(small_tree: tuple[Path, dict]) -> None:
    root, report = small_tree
    eligible, (_, _, manifests), stdout = run_gc(root, "-m", "--dry-run")
    # Deleted manifests have no revision link left, so -m has nothing more to find.
    assert manifests == 0
    assert "manifest eligible for deletion" not in stdout
    assert eligible == set(report["orphaned_blobs"])


def test_comparison_detects_an_unexpected_orphan(tmp_path: Path) -> None:
    """Removing one more revision link must show up as a mismatch."""
    root = tmp_path / "root"
    report = generate_small(root, tmp_path / "report.json")
    v2 = root / "docker" / "registry" / "v2"
    deleted = {e["manifest"] for e in report["deleted"]}
    current = next(
        p
        for p in sorted((v2 / "repositories").glob("*/*/_manifests/tags/*/current/link"))
        if p.read_text() not in deleted
    )
    digest = current.read_text()
    repo_dir = current.parents[4]
    (repo_dir / "_manifests" / "revisions" / "sha256" / digest[7:] / "link").unlink()
    manifest = json.loads((v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data").read_text())
    extra = {digest, manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"][3:])}

    eligible, _, _ = run_gc(root, "--dry-run")
    assert eligible != set(report["orphaned_blobs"])
    assert eligible == set(report["orphaned_blobs"]) | extra


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    mod = load_script("mksynthetic")
    params = mod.Params(repos=6, tags=3, families=2, untagged_pct=34, seed=7)
    first = mod.generate(str(tmp_path / "a"), params)
    second = mod.generate(str(tmp_path / "b"), params)
    other = mod.generate(str(tmp_path / "c"), mod.Params(repos=6, tags=3, families=2, seed=8))

    def snapshot(root: Path) -> dict[str, bytes | None]:
        return {
            str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in root.rglob("*")
        }

    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert first.orphaned_blobs == second.orphaned_blobs
    assert (first.blobs, first.files, first.bytes) == (second.blobs, second.files, second.bytes)
    assert len(first.deleted) == round(18 * 0.34) == 6
    assert set(other.orphaned_blobs).isdisjoint(first.orphaned_blobs)
