"""Shared fixtures: private copies of the script-built trees (the originals are never touched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V1_FIXTURE = FIXTURES / "v1"
V2_FIXTURE = FIXTURES / "v2"


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("EXPECTED.json"))
    return dst


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    return copy_tree(V1_FIXTURE, tmp_path / "v1")


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    return copy_tree(V2_FIXTURE, tmp_path / "v2")


@pytest.fixture(scope="session")
def v1_expected() -> dict:
    return json.loads((V1_FIXTURE / "EXPECTED.json").read_text())


@pytest.fixture(scope="session")
def v2_expected() -> dict:
    return json.loads((V2_FIXTURE / "EXPECTED.json").read_text())


def snapshot(root: Path) -> dict[str, tuple[int, float, bytes]]:
    """Every file under root with size, mtime and content: proof that nothing was written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=["disk", "bucket"])
def place_of(request: pytest.FixtureRequest, tmp_path: Path):
    """`place_of(root)`: where the test runs regtool on the v2 tree `root`: the tree itself,
    or (second run) a copy of it, as it is now, in a fresh S3 bucket."""
    from tests.support.places import Place

    def place(root: Path) -> Place:
        if request.param == "disk":
            return Place(("--root", str(root)), root)
        from tests.support.rgw import bucket_copy

        cluster = request.getfixturevalue("rgw")
        config = bucket_copy(cluster, root, tmp_path)
        return Place(("--config", str(config)), root, cluster, config)

    return place


@pytest.fixture(scope="session")
def rgw():
    """A real Ceph RGW (S3) on 127.0.0.1, started once per session on first use."""
    from tests.support.rgw import running_cluster

    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["openat2", "portable"])
def walk_mode(request):
    """Run a test with openat2 and with the component-by-component no-follow fallback."""
    from regtool.storage import nofollow

    nofollow.use_portable_walk(request.param == "portable")
    yield request.param
    nofollow.use_portable_walk(False)
