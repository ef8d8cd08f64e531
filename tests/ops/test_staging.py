"""Stage: blobs held in upload sessions until published; Tidying: no empty folder after a
failed write; write_tag: no half-written tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.writer import V2Writer
from regtool.ops import layerio
from regtool.ops.staging import Stage, Tidying, size_text
from regtool.storage.filesystem import FilesystemDriver
from tests.support.smalldisk import small_tmpfs
from tests.support.v1tree import make_tar, sha

TAR = make_tar({"etc/hello": b"hello\n" * 1000})


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def folders(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())


def test_staged_blobs_are_invisible_until_published(tmp_path: Path):
    writer = V2Writer(FilesystemDriver(tmp_path, fsync=False))
    stage = Stage(writer)
    digest, size = stage.put("app", [b"abc"])
    assert (digest, size) == (sha(b"abc"), 3) and stage.has(digest)
    assert not writer.has_blob(digest)  # nothing a registry client could link yet
    assert stage.put("other", [b"abc"]) == (digest, 3)  # staged once
    assert len(list(tmp_path.rglob("data"))) == 1
    stage.publish()
    assert writer.has_blob(digest) and [b.digest for b in stage.published] == [digest]
    assert files(tmp_path) == [v2paths.blob_data(digest)]  # sessions gone, no link


def test_a_failing_stream_or_a_discard_leaves_the_storage_as_it_was(tmp_path: Path):
    writer = V2Writer(FilesystemDriver(tmp_path, fsync=False))
    writer.put_blob("app", b"kept")
    before_files, before_folders = files(tmp_path), folders(tmp_path)
    stage = Stage(writer)
    stage.put("app", [b"staged"])
    with pytest.raises(layerio.LayerError):
        stage.put("web/new", layerio.GzipLayer([TAR], expected="sha256:" + "0" * 64))
    stage.discard()
    assert files(tmp_path) == before_files
    assert folders(tmp_path) == before_folders  # no empty web/new/_uploads, app/_uploads


def test_tidying_removes_the_folders_a_write_into_a_full_disk_left(tmp_path: Path):
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        writer = V2Writer(Tidying(FilesystemDriver(disk, fsync=False)))
        writer.link_blob("app", sha(b"x"))
        before = folders(disk)
        with pytest.raises(OSError, match="No space left"):
            writer.driver.put_stream(v2paths.blob_data(sha(b"y")), [bytes(1 << 20)] * 2)
        with pytest.raises(OSError, match="No space left"):
            writer.driver.put(v2paths.layer_link("app", sha(b"z")), bytes(2 << 20))
        assert folders(disk) == before
        assert files(disk) == [v2paths.layer_link("app", sha(b"x"))]  # no temp file either


def test_size_text_reads_like_the_tables():
    assert [size_text(n) for n in (0, 1023, 3_250_586)] == ["0 B", "1023 B", "3.1 MiB"]
