"""The inventory gives the same answer whether one process or several resolve the tags."""

from __future__ import annotations

from regtool.layout.detect import open_reader
from regtool.ops import inventory
from regtool.ops.ls import tag_rows
from tests.support.scripts import load_script


def test_parallel_scan_equals_serial_scan_on_a_synthetic_tree(tmp_path):
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    reader = open_reader(tmp_path / "root")
    names = [repo.name for repo in reader.repositories()]
    serial = inventory._scan(reader, names)
    parallel = inventory._parallel_scan(open_reader(tmp_path / "root"), names, 2)
    assert parallel == serial
    assert len(serial[1]) > 100  # the small preset has 160 live manifests


def test_inventory_switches_to_workers_on_many_repositories(tmp_path, monkeypatch):
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    reader = open_reader(tmp_path / "root")
    serial_rows = tag_rows(inventory.take_inventory(reader))
    calls = []
    original = inventory._parallel_scan

    def spy(*args):
        calls.append(args[2])
        return original(*args)

    monkeypatch.setattr(inventory, "PARALLEL_MIN_REPOSITORIES", 10)
    monkeypatch.setattr(inventory, "_parallel_scan", spy)
    monkeypatch.setattr(inventory, "_workers", lambda n, reader: 2)
    parallel_rows = tag_rows(inventory.take_inventory(open_reader(tmp_path / "root")))
    assert calls == [2]
    assert parallel_rows == serial_rows


def test_no_worker_is_forked_over_an_object_store_view(v2_root, monkeypatch):
    """A forked child must not inherit an object-store client (threads, connections)."""
    from regtool.layout.v2 import bulk
    from regtool.layout.v2.reader import V2Reader
    from regtool.storage.filesystem import FilesystemDriver
    from regtool.storage.snapshot import Snapshot

    monkeypatch.setattr(inventory, "PARALLEL_MIN_REPOSITORIES", 1)
    monkeypatch.setattr(inventory.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    local = open_reader(v2_root)
    viewed = V2Reader(Snapshot(FilesystemDriver(v2_root), bulk.AREAS, bulk.warm), None)
    assert inventory._workers(100, local) > 1
    assert inventory._workers(100, viewed) == 1


def test_scan_keeps_each_blob_digest_once_and_no_parsed_manifests(tmp_path):
    """Memory grows with the distinct blobs, not with the manifests read: the base layers a
    family shares are one string however many manifests name them, and the reader holds
    nothing parsed once a repository is done."""
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    for workers in (1, 2):
        reader = open_reader(tmp_path / "root")
        names = [repo.name for repo in reader.repositories()]
        if workers == 1:
            _, needs, _ = inventory._scan(reader, names)
            assert reader._manifests == {} and reader._configs == {}
        else:
            _, needs, _ = inventory._parallel_scan(reader, names, workers)
        copies: dict[str, set[int]] = {}
        for need in needs.values():
            for blob in need.blobs:
                copies.setdefault(blob, set()).add(id(blob))
        named = [blob for need in needs.values() for blob in need.blobs]
        shared = [blob for blob in copies if named.count(blob) > 1]
        assert shared  # the family base layers
        assert all(len(copies[blob]) == 1 for blob in shared)


def test_users_of_a_blob_one_tag_needs_is_that_tag_alone(tmp_path):
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    taken = inventory.take_inventory(open_reader(tmp_path / "root"))
    single = [blob for blob, users in taken.users.items() if isinstance(users, int)]
    several = [blob for blob, users in taken.users.items() if isinstance(users, list)]
    assert single and several
    for blob in single:
        (index,) = taken.users_of(blob)
        assert blob in taken.tags[index].blobs
    for blob in several:
        assert len(taken.users_of(blob)) > 1
        assert not taken.exclusive_to_one_tag(blob)
    assert taken.users_of("sha256:" + "0" * 64) == []
