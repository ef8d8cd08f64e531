"""The filesystem driver never follows a link below its root: reads, listings and deletes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from regtool.storage.driver import PathNotFound, StorageError
from regtool.storage.filesystem import FilesystemDriver

try:
    from regtool.storage.driver import ForeignObjectError
except ImportError:  # the code before links were handled: check the behaviour only
    ForeignObjectError = StorageError  # type: ignore[misc,assignment]


@pytest.fixture
def layout(tmp_path: Path, walk_mode: str) -> tuple[FilesystemDriver, Path, Path]:
    """(driver, root, outside): `root/a/b/file`, and `outside/` full of files."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"inside")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "file").write_bytes(b"outside")
    (outside / "sub" / "data").write_bytes(b"outside too")
    return FilesystemDriver(root), root, outside


def outside_files(outside: Path) -> set[str]:
    return {str(p.relative_to(outside)) for p in outside.rglob("*")}


EVERYTHING = {"file", "sub", "sub/data"}


def test_reads_through_a_linked_folder_are_refused_and_name_the_link(layout):
    driver, root, outside = layout
    (root / "a" / "link").symlink_to(outside)
    for call in (driver.get, driver.open, driver.stat):
        with pytest.raises(ForeignObjectError) as caught:
            call("a/link/file")
        assert caught.value.foreign == "a/link"
        assert "symbolic link to" in caught.value.message
    assert driver.exists("a/link/file") is False
    with pytest.raises(ForeignObjectError):
        driver.list("a/link")
    with pytest.raises(ForeignObjectError):
        list(driver.walk("a/link"))


def test_a_linked_file_is_neither_read_nor_reported_as_a_file(layout):
    driver, root, outside = layout
    (root / "a" / "b" / "data").symlink_to(outside / "file")
    with pytest.raises(ForeignObjectError):
        driver.get("a/b/data")
    entries = {e.name: e for e in driver.list("a/b")}
    assert entries["data"].is_dir is False
    assert entries["data"].foreign is not None and "symbolic link" in entries["data"].foreign
    assert entries["file"].foreign is None
    walked = {info.path: info for info in driver.walk("a")}
    assert walked["a/b/data"].foreign is not None and walked["a/b/data"].size == 0
    assert walked["a/b/file"].foreign is None and walked["a/b/file"].size == len(b"inside")


def test_a_linked_folder_in_a_listing_is_not_a_folder_and_walk_does_not_enter_it(layout):
    driver, root, outside = layout
    (root / "a" / "linked").symlink_to(outside)
    entry = next(e for e in driver.list("a") if e.name == "linked")
    assert not entry.is_dir and entry.foreign is not None
    assert not any(info.path.startswith("a/linked/") for info in driver.walk(""))


def refused_in_time(call, *args) -> BaseException | None:
    """What `call(*args)` raised, run on a thread; None when it returned. A call still
    blocked after 10 s fails the test (a writer then unblocks a FIFO open it waits in)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            result = call(*args)
            if hasattr(result, "read"):
                result.read(1 << 16)
                result.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
            return
        outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        fifo = args[0]
        fd = os.open(str(fifo), os.O_WRONLY | os.O_NONBLOCK) if isinstance(fifo, Path) else None
        if fd is not None:
            os.close(fd)
        pytest.fail(f"{call.__name__}{args} blocked")
    return outcome[0]


def test_fifo_and_device_links_are_refused_without_blocking(layout):
    driver, root, _outside = layout
    os.mkfifo(root / "a" / "fifo")
    (root / "a" / "zero").symlink_to("/dev/zero")

    def get_fifo(path: Path) -> bytes:
        return driver.get("a/fifo")  # a blocking open waits forever for a writer

    caught = refused_in_time(get_fifo, root / "a" / "fifo")
    assert isinstance(caught, ForeignObjectError) and "FIFO" in caught.message
    assert isinstance(refused_in_time(driver.open, "a/zero"), ForeignObjectError)
    with pytest.raises(ForeignObjectError):
        driver.stat("a/fifo")
    assert next(e for e in driver.list("a") if e.name == "fifo").foreign == "a FIFO"


def test_delete_never_removes_through_a_linked_folder(layout):
    driver, root, outside = layout
    (root / "a" / "link").symlink_to(outside)
    for key in ("a/link/sub", "a/link/file", "a/link/sub/data"):
        with pytest.raises(ForeignObjectError):
            driver.delete(key)
    assert outside_files(outside) == EVERYTHING
    assert (root / "a" / "link").is_symlink()


def test_delete_refuses_a_link_and_a_folder_holding_one_removing_nothing(layout):
    driver, root, outside = layout
    (root / "a" / "b" / "link").symlink_to(outside / "sub")
    with pytest.raises(ForeignObjectError) as caught:
        driver.delete("a")
    assert caught.value.foreign == "a/b/link"
    assert (root / "a" / "b" / "file").exists() and (root / "a" / "b" / "link").is_symlink()
    with pytest.raises(ForeignObjectError):
        driver.delete("a/b/link")
    assert outside_files(outside) == EVERYTHING


def test_delete_removes_real_trees_and_ignores_missing_keys(layout):
    driver, root, _outside = layout
    driver.delete("a/b/file")
    assert not (root / "a" / "b" / "file").exists()
    driver.put("a/b/c/d", b"x")
    driver.delete("a")
    assert not (root / "a").exists()
    driver.delete("a/nothing/here")  # absent: not an error


def test_remove_empty_parents_never_removes_through_a_link(layout):
    driver, root, outside = layout
    (outside / "empty").mkdir()
    (root / "a" / "link").symlink_to(outside)
    driver.remove_empty_parents("a/link/empty", "a")
    assert (outside / "empty").is_dir()


def test_a_root_reached_through_a_link_is_trusted(layout, tmp_path):
    _driver, root, _outside = layout
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    driver = FilesystemDriver(alias)
    assert driver.get("a/b/file") == b"inside"
    assert [e.name for e in driver.list("a")] == ["b"]
    driver.delete("a/b/file")
    assert not (root / "a" / "b" / "file").exists()


def test_missing_keys_are_path_not_found(layout):
    driver, _root, _outside = layout
    with pytest.raises(PathNotFound):
        driver.get("a/nope")
    with pytest.raises(PathNotFound):
        driver.stat("a/b/file/below-a-file")
    assert driver.list("nope") == []
    with pytest.raises(StorageError):
        driver.get("a")  # a folder
