"""One request at a time per upload session (issue 8), over real sockets.

A PATCH still streaming holds its session: a PUT, PATCH or DELETE of the same session from
another connection, or from another server process on the same storage, is refused with
409 BLOB_UPLOAD_INVALID; once the PATCH has finished, the blob committed holds exactly the
bytes its digest names (before the fix, a PUT with the digest of the first 2 MiB got 201
and the last MiB landed in that blob).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from regtool.layout.v2 import paths
from tests.server.apicalls import REPO, UPLOAD, request, seed, sha
from tests.server.conftest import in_process, subprocess_server

MIB = 1 << 20
FIRST = bytes(range(256)) * (2 * MIB // 256)  # sent at once
REST = b"\x5a" * MIB  # sent once the other requests have been refused
WHOLE = FIRST + REST


def _start_session(host: str) -> str:
    status, headers, _ = request(host, *UPLOAD[:2])
    assert status == 202
    return headers["Location"]


def _wait_for_size(host: str, location: str, size: int) -> None:
    """Poll the session's status until the server has stored `size` bytes (bounded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, headers, _ = request(host, "GET", location)
        assert status == 204
        if headers.get("Range") == f"0-{size - 1}":
            return
        time.sleep(0.01)
    raise AssertionError(f"the server never stored {size} bytes of the PATCH")


@contextmanager
def _slow_patch(host: str, location: str) -> Iterator[socket.socket]:
    """A PATCH announcing all of WHOLE but sending only FIRST; the socket stays open."""
    port = int(host.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {len(WHOLE)}\r\n\r\n".encode()
            + FIRST
        )
        _wait_for_size(host, location, len(FIRST))
        yield sock
    finally:
        sock.close()


def _finish_patch(sock: socket.socket) -> int:
    sock.sendall(REST)
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def _assert_busy(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, _, body = answer
    assert status == 409, body
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"


def _assert_committed_whole(host: str, location: str, root: Path) -> None:
    status, headers, _ = request(host, "PUT", f"{location}?digest={sha(WHOLE)}")
    assert status == 201
    assert headers["Docker-Content-Digest"] == sha(WHOLE)
    got = request(host, "GET", f"/v2/{REPO}/blobs/{sha(WHOLE)}")[2]
    assert hashlib.sha256(got).hexdigest() == sha(WHOLE).split(":")[1]
    assert got == WHOLE
    assert (root / paths.blob_data(sha(WHOLE))).read_bytes() == WHOLE
    assert not (root / paths.blob_data(sha(FIRST))).exists()
    assert request(host, "GET", f"/v2/{REPO}/blobs/{sha(FIRST)}")[0] == 404


def test_put_during_a_streaming_patch_is_refused_and_the_blob_holds_every_byte(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    seed(root)
    with in_process(root) as served:
        host = served.host
        location = _start_session(host)
        with _slow_patch(host, location) as sock:
            _assert_busy(request(host, "PUT", f"{location}?digest={sha(FIRST)}"))
            _assert_busy(
                request(
                    host,
                    "PATCH",
                    location,
                    b"more",
                    {"Content-Type": "application/octet-stream"},
                )
            )
            _assert_busy(request(host, "DELETE", location))
            assert _finish_patch(sock) == 202
        _assert_committed_whole(host, location, root)


def test_a_second_server_on_the_same_storage_is_refused_too(tmp_path: Path) -> None:
    """The hold is a flock on the session's `startedat`: it excludes other processes."""
    root = tmp_path / "root"
    seed(root)
    with in_process(root) as first, subprocess_server(root) as second:
        location = _start_session(first.host)
        with _slow_patch(first.host, location) as sock:
            _assert_busy(request(second.host, "PUT", f"{location}?digest={sha(FIRST)}"))
            _assert_busy(request(second.host, "DELETE", location))
            assert _finish_patch(sock) == 202
        _assert_committed_whole(second.host, location, root)


def test_a_refused_request_leaves_the_session_usable(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed(root)
    with in_process(root) as served:
        host = served.host
        location = _start_session(host)
        with _slow_patch(host, location) as sock:
            _assert_busy(request(host, "PUT", f"{location}?digest={sha(FIRST)}", b"x"))
            assert _finish_patch(sock) == 202
        status, headers, _ = request(host, "GET", location)
        assert (status, headers["Range"]) == (204, f"0-{len(WHOLE) - 1}")
        _assert_committed_whole(host, location, root)


# -- lock scope: the storage lock covers commits, never a body streaming in ----------------
def test_a_patch_streams_while_gc_holds_the_lock_and_a_refused_commit_keeps_the_bytes(
    tmp_path: Path,
) -> None:
    from regtool.server.handlers.context import Options
    from regtool.storage.lock import storage_lock

    root = tmp_path / "root"
    seed(root)
    data = b"streamed while gc ran" * 1000
    digest = sha(data)
    with in_process(root, Options(lock_timeout=0.2)) as served:
        status, headers, _ = request(served.host, "POST", f"/v2/{REPO}/blobs/uploads/")
        assert status == 202
        location = headers["Location"]
        with storage_lock(root, exclusive=True):  # a gc sweeping
            status, _, body = request(
                served.host,
                "PATCH",
                location,
                data,
                {"Content-Type": "application/octet-stream"},
            )
            assert status == 202, body  # the body is taken, not refused
            status, headers, body = request(served.host, "PUT", f"{location}?digest={digest}")
            assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
            assert not (root / paths.blob_data(digest)).exists()
        status, headers, _ = request(served.host, "GET", location)
        assert status == 204 and headers["Range"] == f"0-{len(data) - 1}"  # kept for a retry
        status, _, body = request(served.host, "PUT", f"{location}?digest={digest}")
        assert status == 201, body
        status, _, got = request(served.host, "GET", f"/v2/{REPO}/blobs/{digest}")
        assert status == 200 and got == data
