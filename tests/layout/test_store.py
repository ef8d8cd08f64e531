"""open_storage(): one way to open a root or a config, and the lock as a Store concept."""

import json
import time
from pathlib import Path

import pytest

from regtool.errors import RootError, UsageError
from regtool.layout.store import LockTimeout, Store, open_storage
from regtool.layout.v1.reader import V1Reader
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.layout.v2.writer import V2Writer
from regtool.ops.gc import GcOptions, collect_garbage
from regtool.storage.driver import StorageError

LOCK_NAME = ".regtool.lock"


def test_v2_root_opens_read_only_by_default(v2_root: Path) -> None:
    store = open_storage(v2_root)
    assert store.layout == "v2" and store.root == v2_root
    assert isinstance(store.reader, V2Reader)
    assert store.writer is None and not store.writable
    assert {r.name for r in store.reader.repositories()} >= {"busybox", "centos"}
    with pytest.raises(StorageError, match="read-only"):
        store.driver.put("x", b"1")
    assert not (v2_root / "x").exists()


def test_inner_v2_folder_opens_the_storage_root(v2_root: Path) -> None:
    store = open_storage(v2_root / v2paths.V2)
    assert store.root == v2_root and store.layout == "v2"


def test_writable_v2_store_has_a_writer_that_writes(v2_root: Path) -> None:
    store = open_storage(v2_root, writable=True, fsync=False)
    assert store.writable and not store.fsync
    assert isinstance(store.writer, V2Writer)
    digest = next(t.digest for t in store.reader.tags("busybox") if t.tag == "latest")
    store.writer.tag("busybox", "alias", digest)
    assert "alias" in {t.tag for t in open_storage(v2_root).reader.tags("busybox")}


def test_v1_root_has_a_v1_reader_and_never_a_writer(v1_root: Path) -> None:
    store = open_storage(v1_root, writable=True)
    assert store.layout == "v1" and isinstance(store.reader, V1Reader)
    assert store.writer is None and store.writable  # gc and rm still delete through it


def test_empty_root_reads_as_an_empty_v2_tree(tmp_path: Path) -> None:
    store = open_storage(tmp_path)
    assert store.layout is None and isinstance(store.reader, V2Reader)
    assert store.reader.repositories() == []


def test_missing_root_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(RootError, match="does not exist") as caught:
        open_storage(tmp_path / "nope")
    assert caught.value.hint and "--root" in caught.value.hint
    assert not (tmp_path / "nope").exists()


def test_a_file_or_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RootError, match="is not a folder"):
        open_storage(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(RootError, match="holds no registry storage"):
        open_storage(tmp_path / "other")


def test_config_rootdirectory_is_the_root_and_root_wins(tmp_path: Path, v2_root: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"storage": {"filesystem": {"rootdirectory": str(v2_root)}}}))
    assert open_storage(config=config).root == v2_root
    (tmp_path / "empty").mkdir()
    assert open_storage(tmp_path / "empty", config).layout is None


def test_config_with_a_driver_other_than_filesystem_or_s3_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("storage:\n  azure:\n    accountname: a\n")
    with pytest.raises(UsageError, match="uses storage driver azure; regtool reads the filesyst"):
        open_storage(config=config)


def _store(root: Path) -> Store:
    return open_storage(root)


def test_shared_locks_coexist_and_exclude_an_exclusive_one(v2_root: Path) -> None:
    one, two = _store(v2_root), _store(v2_root)
    with one.lock(exclusive=False), two.lock(exclusive=False):
        with pytest.raises(LockTimeout) as caught, one.lock(exclusive=True, timeout=0):
            pass
    assert caught.value.path == v2_root / LOCK_NAME
    with one.lock(exclusive=True):  # released: granted again
        pass


def test_exclusive_lock_times_out_after_the_timeout(v2_root: Path) -> None:
    holder, waiter = _store(v2_root), _store(v2_root)
    with holder.lock(exclusive=True):
        started = time.monotonic()
        with pytest.raises(LockTimeout), waiter.lock(exclusive=False, timeout=0.2):
            pass
        assert time.monotonic() - started >= 0.2


def test_gc_refuses_a_read_only_store(v2_root: Path) -> None:
    with pytest.raises(ValueError, match="writable=True"):
        collect_garbage(open_storage(v2_root), GcOptions(grace=0))


def test_a_reread_for_a_server_thread_never_forks_workers(v2_root):
    """gc and ls fork worker processes on big local trees; a server's background thread must
    not (the child would inherit locks other threads hold)."""
    from regtool.layout.store import open_storage

    store = open_storage(v2_root)
    assert store.reread().driver.forks is True
    quiet = store.reread(forks=False)
    assert quiet.driver.forks is False
    assert [r.name for r in quiet.repositories()] == [r.name for r in store.reader.repositories()]
