"""The filesystem scan's lean reads (LocalScan.read, gc's hot path): bounded, regular files
only, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regtool.storage.driver import ForeignObjectError, PathNotFound, StorageError, TooLarge
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.fs_scan import READ_CHUNK, LocalScan


@pytest.fixture
def files(tmp_path: Path, walk_mode: str) -> LocalScan:
    (tmp_path / "root" / "a").mkdir(parents=True)
    scan = FilesystemDriver(tmp_path / "root", readonly=True).scanner()
    assert isinstance(scan, LocalScan)
    return scan


@pytest.mark.parametrize("size", [0, 10, READ_CHUNK - 1, READ_CHUNK, 3 * READ_CHUNK + 5])
def test_read_returns_whole_files_up_to_the_limit_and_refuses_one_byte_more(files, size):
    root = Path(files.driver.root)
    (root / "a" / "fits").write_bytes(b"x" * size)
    (root / "a" / "over").write_bytes(b"y" * (size + 1))
    assert files.read("a/fits") == b"x" * size
    assert files.read("a/fits", size) == b"x" * size
    with pytest.raises(TooLarge):
        files.read("a/over", size)


def test_read_never_takes_bytes_from_a_fifo_with_a_writer(files):
    root = Path(files.driver.root)
    os.mkfifo(root / "a" / "link")
    writer = os.open(root / "a" / "link", os.O_RDWR | os.O_NONBLOCK)  # Linux: no wait
    try:
        os.write(writer, b"sha256:" + b"0" * 64)
        with pytest.raises(ForeignObjectError, match="FIFO"):
            files.read("a/link", 1024)
        assert os.read(writer, 100) == b"sha256:" + b"0" * 64  # still all in the pipe
    finally:
        os.close(writer)


def test_read_refuses_links_folders_and_devices_and_says_what_is_missing(files, tmp_path):
    root = Path(files.driver.root)
    (tmp_path / "outside").write_bytes(b"secret")
    (root / "a" / "to-file").symlink_to(tmp_path / "outside")
    (root / "a" / "zero").symlink_to("/dev/zero")
    (root / "linked").symlink_to(root / "a")
    (root / "a" / "real").write_bytes(b"ok")
    for key in ("a/to-file", "a/zero", "linked/real"):
        with pytest.raises(ForeignObjectError):
            files.read(key, 1024)
    with pytest.raises(StorageError, match="directory"):
        files.read("a", 1024)
    with pytest.raises(PathNotFound):
        files.read("a/missing", 1024)
    with pytest.raises(PathNotFound):
        files.read("a/real/below", 1024)
    assert files.read("a/real", 1024) == b"ok"
