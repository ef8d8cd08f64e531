"""V2Writer's upload commit: it links only bytes of the size that was hashed (issue 8)."""

from __future__ import annotations

import pytest

from regtool.layout.v2 import paths
from regtool.layout.v2.writer import UploadChanged, V2Writer
from regtool.storage.driver import ObjectBusy
from regtool.storage.filesystem import FilesystemDriver
from tests.server.apicalls import sha

REPO = "test/repo"


@pytest.fixture
def writer(tmp_path):
    return V2Writer(FilesystemDriver(tmp_path, fsync=False))


def _upload(writer: V2Writer, data: bytes) -> str:
    upload_id = writer.start_upload(REPO)
    with writer.append_upload(REPO, upload_id) as handle:
        handle.write(data)
    return upload_id


def test_commit_links_the_blob_when_the_size_is_the_one_hashed(writer, tmp_path):
    upload_id = _upload(writer, b"hello")
    assert writer.commit_upload(REPO, upload_id, sha(b"hello"), 5) == 5
    assert (tmp_path / paths.blob_data(sha(b"hello"))).read_bytes() == b"hello"
    assert (tmp_path / paths.layer_link(REPO, sha(b"hello"))).exists()
    assert not (tmp_path / paths.upload_dir(REPO, upload_id)).exists()


def test_commit_of_more_bytes_than_were_hashed_links_nothing(writer, tmp_path):
    """Bytes appended after the digest was computed must never be stored under it."""
    upload_id = _upload(writer, b"hello, and more")
    with pytest.raises(UploadChanged):
        writer.commit_upload(REPO, upload_id, sha(b"hello"), 5)
    assert not (tmp_path / paths.blob_data(sha(b"hello"))).exists()
    assert not (tmp_path / paths.layer_link(REPO, sha(b"hello"))).exists()


def test_a_held_session_refuses_a_second_holder(writer):
    upload_id = writer.start_upload(REPO)
    with writer.hold_upload(REPO, upload_id):
        with pytest.raises(ObjectBusy):
            with writer.hold_upload(REPO, upload_id):
                pass
