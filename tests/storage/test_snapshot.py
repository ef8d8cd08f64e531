"""Snapshot: listings answered from one flat listing per area, kept true across writes.

Run over the filesystem driver here (every answer must equal the driver's own); over a real
S3 bucket in tests/storage/test_objectstore_scans.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.layout.v2 import bulk
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.ls import list_tags
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.snapshot import Snapshot


def folders(driver: StorageDriver, prefix: str) -> list[str]:
    found, stack = [], [prefix]
    while stack:
        folder = stack.pop()
        found.append(folder)
        stack.extend(f"{folder}/{e.name}" for e in driver.list(folder) if e.is_dir)
    return found


def test_every_listing_equals_the_drivers_own(v2_root: Path) -> None:
    driver = FilesystemDriver(v2_root)
    view = Snapshot(driver, bulk.AREAS, bulk.warm)
    for area in bulk.AREAS:
        for folder in folders(driver, area):
            assert view.list(folder) == driver.list(folder), folder
            assert view.exists(folder)
            assert list(view.walk(folder)) == list(driver.walk(folder)), folder
        for info in driver.walk(area):
            assert view.stat(info.path) == info
            assert view.get(info.path) == driver.get(info.path)


def test_outside_the_areas_the_driver_answers(v2_root: Path) -> None:
    driver = FilesystemDriver(v2_root)
    view = Snapshot(driver, bulk.AREAS)
    assert view.list(v2paths.V2) == driver.list(v2paths.V2)
    assert view.list("") == driver.list("")


def test_a_key_missing_from_the_listing_is_not_found_without_asking(v2_root: Path) -> None:
    driver = FilesystemDriver(v2_root)
    view = Snapshot(driver, bulk.AREAS)
    view.list(v2paths.BLOBS)  # listed now; a file written behind its back is not seen
    (v2_root / v2paths.BLOBS / "late").write_bytes(b"x")
    with pytest.raises(PathNotFound):
        view.get(f"{v2paths.BLOBS}/late")
    assert not view.exists(f"{v2paths.BLOBS}/late")


def test_writes_through_the_view_keep_it_true(v2_root: Path) -> None:
    driver = FilesystemDriver(v2_root, readonly=False, fsync=False)
    view = Snapshot(driver, bulk.AREAS)
    blob = next(driver.walk(v2paths.BLOBS))
    folder = blob.path.rpartition("/")[0]
    fan = folder.rpartition("/")[0]
    view.delete(folder)
    assert not view.exists(blob.path) and not (v2_root / blob.path).exists()
    assert view.list(fan) == driver.list(fan)
    view.put(f"{folder}/data", b"back")
    assert view.get(f"{folder}/data") == b"back"
    assert view.list(fan) == driver.list(fan)
    view.move(f"{folder}/data", f"{folder}/moved")
    assert [e.name for e in view.list(folder)] == ["moved"] == [e.name for e in driver.list(folder)]
    for area in bulk.AREAS:
        assert list(view.walk(area)) == [
            info if info.path != f"{folder}/moved" else view.stat(info.path)
            for info in driver.walk(area)
        ]


def test_ls_and_gc_plan_through_the_view_match_the_plain_reader(v2_root: Path) -> None:
    driver = FilesystemDriver(v2_root)
    plain = V2Reader(driver, v2_root)
    viewed = V2Reader(Snapshot(driver, bulk.AREAS, bulk.warm), None)
    assert list_tags(viewed) == list_tags(plain)
    for untagged in (False, True):
        options = GcOptions(grace=0.0, delete_untagged=untagged)
        assert plan_gc(viewed, options).delete == plan_gc(plain, options).delete


class Batched:
    """The filesystem driver plus an object store's batch read, recording what was asked."""

    def __init__(self, driver: FilesystemDriver) -> None:
        self.driver = driver
        self.batches: list[list[str]] = []

    def __getattr__(self, name: str):
        return getattr(self.driver, name)

    def get_many(self, paths, limit=None):
        self.batches.append(list(paths))
        return {path: self.driver.get(path, limit) for path in self.batches[-1]}


def test_without_md5s_warming_fetches_links_and_manifests_never_layers(v2_root, v2_expected):
    """Listed MD5s missing (an SSE-KMS bucket): every link is fetched, then the manifests
    the revision and tag links name; no layer blob is read ahead."""
    driver = Batched(FilesystemDriver(v2_root))
    view = Snapshot(driver, bulk.AREAS, bulk.warm)  # type: ignore[arg-type]
    view.list(v2paths.REPOSITORIES)
    links, manifests = driver.batches
    assert all(path.endswith("/link") for path in links)
    stored = {m["digest"] for m in v2_expected["manifests"].values()}
    layers = {layer for m in v2_expected["manifests"].values() for layer in m.get("layers", ())}
    fetched = {path.split("/")[-2] for path in manifests}
    assert {d.split(":")[1] for d in stored} <= fetched
    assert not fetched & {d.split(":")[1] for d in layers - stored}


class Listed:
    """Just a flat listing, in the order given (an object store lists in key order)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def walk(self, prefix: str):
        from regtool.storage.driver import FileInfo

        return (FileInfo(k, 1, 0.0, False) for k in self.keys if k.startswith(prefix + "/"))


R = v2paths.REPOSITORIES


def test_windows_hold_whole_units_and_end_at_the_first_boundary_past_the_limit() -> None:
    keys = sorted(
        f"{R}/{name}/{marker}/{i}"
        for name in ("a", "a/0b", "c")
        for marker in ("_layers", "_manifests")
        for i in range(3)
    ) + [f"{R}/d/_uploads/u/data", f"{R}/e/notes"]
    view = Snapshot(Listed(keys), [R])  # type: ignore[arg-type]
    batches = list(view.windows(R, bulk.repository_of, 7))
    assert [units for units, _ in batches] == [["a/0b", "a"], ["c", "d"]]
    assert [len(infos) for _, infos in batches] == [12, 7]  # e/notes belongs to no unit


def test_a_listing_out_of_key_order_is_refused_rather_than_split() -> None:
    keys = [f"{R}/b/_layers/1", f"{R}/a/_layers/1", f"{R}/b/_layers/2"]
    view = Snapshot(Listed(keys), [R])  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="out of order"):
        list(view.windows(R, bulk.repository_of, 100))


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("team/app/_manifests/tags/v1/current/link", "team/app"),
        ("team/app/_uploads/u/data", "team/app"),
        ("team/_junk/x", None),  # an underscore folder that is no repository's
        ("team/app/notes.txt", None),
        ("_layers/sha256/x/link", None),  # no repository name above it
    ],
)
def test_the_repository_an_object_belongs_to(key: str, owner: str | None) -> None:
    assert bulk.repository_of(f"{R}/{key}") == owner


def test_a_window_view_answers_its_areas_from_memory_and_nothing_else_is_listed(
    v2_root: Path,
) -> None:
    driver = FilesystemDriver(v2_root)
    area = f"{R}/busybox/_layers"
    view = Snapshot(driver, [R]).window([area], driver.walk(area))
    assert [e.name for e in view.list(area)] == [e.name for e in driver.list(area)]
    assert view.list(f"{R}/centos/_layers") == driver.list(f"{R}/centos/_layers")
    assert not view._loaded - {area}  # the whole area was never listed
