"""A full disk while serving (issue 8): 507 with the spec's error JSON, the error logged,
nothing half-written left (no session data, no temp file, no link, no manifest revision)
and the space given back. Runs on a 4 MiB tmpfs the test mounts (root only, as in CI)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from tests.server.apicalls import LAYER, REPO, UPLOAD, desc, image, request, seed, sha, snapshot
from tests.server.conftest import Served, in_process

MIB = 1 << 20
BIG = b"\xa5" * (5 * MIB)  # more than the whole disk
PAGE = 4096
# a manifest not in the seeded storage, naming only seeded blobs
NEW_MANIFEST = image([desc(mt.DOCKER_LAYER, LAYER)]) + b"\n"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def served(disk: Path) -> Iterator[Served]:
    seed(disk / "root")
    with in_process(disk / "root") as server:
        yield server


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with a file outside the storage, then free `leave` bytes of it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * (64 * 1024)
    try:
        for _ in range(1000):  # 64 MiB at most
            os.write(fd, block)
        raise AssertionError("the tmpfs never filled")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    for _ in range(100):  # a short write leaves a partial page: fill it too
        try:
            with filler.open("ab") as handle:
                handle.write(b"\0")
        except OSError:
            break
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler


def free_bytes(disk: Path) -> int:
    stat = os.statvfs(disk)
    return stat.f_bavail * stat.f_frsize


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def assert_storage_full(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = answer
    assert status == 507, body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["errors"][0]
    assert (error["code"], error["message"]) == ("UNKNOWN", "storage full")


def test_patch_on_a_full_disk_answers_507_and_removes_the_session(
    served: Served, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, free = snapshot(served.root), free_bytes(disk)
    status, headers, _ = request(served.host, *UPLOAD[:2])
    location = headers["Location"]
    assert_storage_full(
        request(served.host, "PATCH", location, BIG, {"Content-Type": "application/octet-stream"})
    )
    assert request(served.host, "GET", location)[0] == 404  # the session is gone
    assert snapshot(served.root) == before
    assert temp_files(served.root) == []
    assert free_bytes(disk) == free
    assert "storage error" in capsys.readouterr().err


def test_monolithic_post_on_a_full_disk_leaves_nothing(served: Served, disk: Path) -> None:
    before, free = snapshot(served.root), free_bytes(disk)
    assert_storage_full(
        request(served.host, "POST", f"/v2/{REPO}/blobs/uploads/?digest={sha(BIG)}", BIG)
    )
    assert snapshot(served.root) == before
    assert free_bytes(disk) == free


def test_put_with_a_body_on_a_full_disk_leaves_nothing(served: Served, disk: Path) -> None:
    before, free = snapshot(served.root), free_bytes(disk)
    location = request(served.host, *UPLOAD[:2])[1]["Location"]
    assert_storage_full(request(served.host, "PUT", f"{location}?digest={sha(BIG)}", BIG))
    assert request(served.host, "GET", location)[0] == 404
    assert snapshot(served.root) == before
    assert free_bytes(disk) == free


def test_commit_that_cannot_write_its_link_links_nothing(served: Served, disk: Path) -> None:
    data = b"\x5a" * 8192
    location = request(served.host, *UPLOAD[:2])[1]["Location"]
    status = request(
        served.host, "PATCH", location, data, {"Content-Type": "application/octet-stream"}
    )[0]
    assert status == 202
    fill(disk)  # the data moves into blobs/ (a rename), its _layers link cannot be written
    assert_storage_full(request(served.host, "PUT", f"{location}?digest={sha(data)}"))
    assert not (served.root / paths.layer_link(REPO, sha(data))).exists()
    assert request(served.host, "GET", f"/v2/{REPO}/blobs/{sha(data)}")[0] == 404
    assert request(served.host, "GET", location)[0] == 404
    blob = served.root / paths.blob_data(sha(data))
    assert not blob.exists() or blob.read_bytes() == data  # whole and unlinked: gc's
    assert temp_files(served.root) == []


def test_a_session_cannot_start_on_a_full_disk_and_leaves_no_folder(
    served: Served, disk: Path
) -> None:
    before = snapshot(served.root)
    fill(disk)
    assert_storage_full(request(served.host, *UPLOAD[:2]))
    assert snapshot(served.root) == before
    assert not (served.root / paths.uploads_dir(REPO)).exists()


def put_new_manifest(served: Served) -> tuple[int, dict[str, str], bytes]:
    return request(
        served.host,
        "PUT",
        f"/v2/{REPO}/manifests/new",
        NEW_MANIFEST,
        {"Content-Type": mt.DOCKER_MANIFEST},
    )


def assert_no_new_manifest(served: Served) -> None:
    digest = sha(NEW_MANIFEST)
    assert not (served.root / paths.revision_link(REPO, digest)).exists()
    assert not (served.root / paths.tag_dir(REPO, "new")).exists()
    assert temp_files(served.root) == []
    blob = served.root / paths.blob_data(digest)
    assert not blob.exists() or blob.read_bytes() == NEW_MANIFEST  # whole, or not at all
    assert request(served.host, "GET", f"/v2/{REPO}/manifests/new")[0] == 404
    assert request(served.host, "GET", f"/v2/{REPO}/manifests/{digest}")[0] == 404


def test_manifest_put_on_a_full_disk_writes_no_revision(served: Served, disk: Path) -> None:
    filler = fill(disk)
    assert_storage_full(put_new_manifest(served))
    assert_no_new_manifest(served)
    filler.unlink()
    assert put_new_manifest(served)[0] == 201  # and the server goes on once there is room


@pytest.mark.parametrize(
    "pages", [1, 2, 3], ids=["room for the blob", "and the revision", "and the tag index"]
)
def test_manifest_put_that_runs_out_of_room_midway_leaves_no_tag(
    served: Served, disk: Path, pages: int
) -> None:
    """Each write is one page on tmpfs: blob, revision link, tag index link, current link."""
    fill(disk, leave=pages * PAGE)
    assert_storage_full(put_new_manifest(served))
    digest = sha(NEW_MANIFEST)
    assert (served.root / paths.blob_data(digest)).read_bytes() == NEW_MANIFEST
    assert not (served.root / paths.tag_dir(REPO, "new")).exists()
    assert temp_files(served.root) == []
    assert request(served.host, "GET", f"/v2/{REPO}/manifests/new")[0] == 404
    assert "new" not in json.loads(request(served.host, "GET", f"/v2/{REPO}/tags/list")[2])["tags"]
    revision = served.root / paths.revision_link(REPO, digest)
    assert revision.exists() == (pages > 1)  # a whole, untagged manifest (gc -m removes it)
    if pages > 1:
        assert request(served.host, "GET", f"/v2/{REPO}/manifests/{digest}")[2] == NEW_MANIFEST
