import fcntl
import os
import threading

import pytest

from regtool.storage.driver import InvalidPath, ObjectBusy, PathNotFound, StorageError
from regtool.storage.filesystem import FilesystemDriver


@pytest.fixture
def driver(tmp_path):
    return FilesystemDriver(tmp_path)


def test_put_then_get_roundtrips_and_leaves_no_temp_files(driver, tmp_path):
    driver.put("a/b/link", b"sha256:x")
    assert driver.get("a/b/link") == b"sha256:x"
    assert os.listdir(tmp_path / "a" / "b") == ["link"]


def test_put_stream_counts_bytes(driver):
    assert driver.put_stream("blob/data", (b"ab", b"cde")) == 5
    assert driver.stat("blob/data").size == 5


def test_failed_stream_leaves_old_content_and_no_temp(driver, tmp_path):
    driver.put("x/data", b"old")

    def chunks():
        yield b"new"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        driver.put_stream("x/data", chunks())
    assert driver.get("x/data") == b"old"
    assert os.listdir(tmp_path / "x") == ["data"]


def test_missing_paths_raise_path_not_found(driver):
    with pytest.raises(PathNotFound):
        driver.get("nope")
    with pytest.raises(PathNotFound):
        driver.stat("nope/deeper")
    assert driver.list("nope") == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "a/../../b"])
def test_keys_cannot_leave_the_root(driver, key):
    with pytest.raises(InvalidPath):
        driver.get(key)


def test_list_is_sorted_and_walk_finds_files_depth_first(driver):
    for key in ["r/b/link", "r/a/link", "r/a/z/data"]:
        driver.put(key, b"1")
    assert [(e.name, e.is_dir) for e in driver.list("r")] == [("a", True), ("b", True)]
    assert [f.path for f in driver.walk("r")] == ["r/a/link", "r/a/z/data", "r/b/link"]


def test_delete_and_move(driver):
    driver.put("u/1/data", b"abc")
    driver.move("u/1/data", "blobs/x/data")
    assert driver.get("blobs/x/data") == b"abc"
    driver.delete("blobs")
    assert not driver.exists("blobs/x/data")
    driver.delete("blobs")  # missing: no error


def test_readonly_driver_refuses_every_write(tmp_path):
    driver = FilesystemDriver(tmp_path, readonly=True)
    with pytest.raises(StorageError, match="read-only"):
        driver.put("a", b"1")
    with pytest.raises(StorageError, match="read-only"):
        driver.delete("a")
    assert list(tmp_path.iterdir()) == []


def test_open_append_creates_then_appends(driver):
    with driver.open_append("u/1/data") as handle:
        handle.write(b"ab")
    with driver.open_append("u/1/data") as handle:
        handle.write(b"cd")
    assert driver.get("u/1/data") == b"abcd"


def test_open_append_refuses_when_read_only(tmp_path):
    with pytest.raises(StorageError):
        FilesystemDriver(tmp_path, readonly=True).open_append("u/1/data")


def test_open_append_refuses_dot_dot(driver):
    with pytest.raises(InvalidPath):
        driver.open_append("../escape")


def test_hold_excludes_a_second_holder_in_another_thread(driver):
    driver.put("u/1/startedat", b"t")
    entered, release = threading.Event(), threading.Event()

    def first() -> None:
        with driver.hold("u/1/startedat"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(10)
        with pytest.raises(ObjectBusy):
            with driver.hold("u/1/startedat"):
                pass
    finally:
        release.set()
        thread.join(10)
    with driver.hold("u/1/startedat"):  # free again once released
        pass


def test_hold_is_refused_while_another_process_has_the_flock(driver, tmp_path):
    """flock(2) on a separate open file, as another server process would hold it."""
    driver.put("u/1/startedat", b"t")
    fd = os.open(tmp_path / "u" / "1" / "startedat", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ObjectBusy):
            with driver.hold("u/1/startedat"):
                pass
    finally:
        os.close(fd)
    with driver.hold("u/1/startedat"):
        pass


def test_hold_of_a_missing_or_removed_object_is_path_not_found(driver):
    with pytest.raises(PathNotFound):
        with driver.hold("u/1/startedat"):
            pass
    driver.put("u/2/startedat", b"t")
    with driver.hold("u/2/startedat"):
        driver.delete("u/2")  # the holder may remove what it holds
    with pytest.raises(PathNotFound):
        with driver.hold("u/2/startedat"):
            pass


def test_hold_refuses_when_read_only(tmp_path):
    (tmp_path / "startedat").write_bytes(b"t")
    with pytest.raises(StorageError, match="read-only"):
        with FilesystemDriver(tmp_path, readonly=True).hold("startedat"):
            pass
