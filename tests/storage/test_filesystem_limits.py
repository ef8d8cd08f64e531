"""Bounded whole-object reads: a limit refuses big objects without reading them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regtool.storage.driver import TooLarge
from regtool.storage.filesystem import CHUNK, FilesystemDriver, read_fd
from tests.support.hostile import peak_rss

BIG = 300 * 1024 * 1024


@pytest.fixture
def driver(tmp_path):
    return FilesystemDriver(tmp_path)


def reset_peak_rss() -> int:
    """Start a new high-water mark of this process's memory (Linux); returns the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def test_get_refuses_a_300_mb_sparse_file_without_reading_it(driver, tmp_path):
    with open(tmp_path / "data", "wb") as handle:
        handle.truncate(BIG)
    before = reset_peak_rss() * 1024
    with pytest.raises(TooLarge, match="larger than 4194304 bytes") as caught:
        driver.get("data", 4 * 1024 * 1024)
    assert caught.value.path == "data"
    assert peak_rss() - before < 64 * 1024 * 1024


@pytest.mark.parametrize("limit", [0, 10, CHUNK - 1, CHUNK, 3 * CHUNK])
def test_get_returns_objects_up_to_the_limit_and_refuses_one_byte_more(driver, limit):
    driver.put("fits", b"x" * limit)
    driver.put("over", b"x" * (limit + 1))
    assert driver.get("fits", limit) == b"x" * limit
    with pytest.raises(TooLarge):
        driver.get("over", limit)
    assert driver.get("over") == b"x" * (limit + 1)  # no limit: everything


def test_read_fd_stops_past_the_limit_when_the_size_said_less():
    """A file still growing (a pipe here: its size reads 0) is cut at limit + 1 bytes."""
    reader, writer = os.pipe()
    try:
        os.write(writer, b"y" * 40)
        with pytest.raises(TooLarge):
            read_fd(reader, "growing", limit=10, chunk=4)
        assert len(os.read(reader, 100)) == 40 - 11  # read exactly limit + 1
    finally:
        os.close(reader)
        os.close(writer)
