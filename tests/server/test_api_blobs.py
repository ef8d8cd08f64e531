"""Blob and upload calls of the registry API, each on a fresh storage (see apicalls.py)."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from regtool.server.handlers.context import Options
from tests.server.apicalls import (
    CONFIG,
    LAYER,
    MANIFEST,
    OTHER_LAYER,
    REPO,
    UPLOAD,
    Call,
    request,
    run_call,
    seed,
    sha,
    snapshot,
)
from tests.server.conftest import in_process

CALLS = [
    Call(
        "blob head",
        "HEAD",
        f"/v2/{REPO}/blobs/{{layer}}",
        200,
        want={"Content-Length": str(len(LAYER)), "Docker-Content-Digest": sha(LAYER)},
    ),
    Call(
        "blob get",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        200,
        want={"Content-Length": str(len(LAYER)), "Content-Type": "application/octet-stream"},
    ),
    Call(
        "blob range",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        206,
        headers={"Range": "bytes=2-5"},
        want={"Content-Range": f"bytes 2-5/{len(LAYER)}", "Content-Length": "4"},
    ),
    Call(
        "blob suffix range",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        206,
        headers={"Range": "bytes=-3"},
        want={"Content-Range": f"bytes 19-21/{len(LAYER)}"},
    ),
    Call(
        "blob range past the end",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        416,
        "RANGE_INVALID",
        headers={"Range": "bytes=100-200"},
        want={"Content-Range": f"bytes */{len(LAYER)}"},
    ),
    Call(
        "blob garbage range",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        416,
        "RANGE_INVALID",
        headers={"Range": "pages=1"},
    ),
    Call(
        "blob range of 5000 digits",
        "GET",
        f"/v2/{REPO}/blobs/{{layer}}",
        416,
        "RANGE_INVALID",
        headers={"Range": "bytes=0-" + "9" * 5000},
    ),
    Call("blob unknown", "GET", f"/v2/{REPO}/blobs/{{missing}}", 404, "BLOB_UNKNOWN"),
    Call("blob of another repo", "GET", f"/v2/{REPO}/blobs/{{other}}", 404, "BLOB_UNKNOWN"),
    Call("blob bad digest", "GET", f"/v2/{REPO}/blobs/sha256:XYZ", 400, "DIGEST_INVALID"),
    Call("blob delete", "DELETE", f"/v2/{REPO}/blobs/{{layer}}", 202),
    Call("blob delete unknown", "DELETE", f"/v2/{REPO}/blobs/{{missing}}", 404, "BLOB_UNKNOWN"),
    Call(
        "blob delete disabled",
        "DELETE",
        f"/v2/{REPO}/blobs/{{layer}}",
        405,
        "UNSUPPORTED",
        options=Options(delete_enabled=False),
    ),
    Call(
        "upload start",
        "POST",
        f"/v2/{REPO}/blobs/uploads/",
        202,
        want={"Range": "0-0", "Location": None, "Docker-Upload-UUID": None},
    ),
    Call(
        "upload monolithic",
        "POST",
        f"/v2/{REPO}/blobs/uploads/?digest={{missing}}",
        201,
        body=b"nope",
        want={"Docker-Content-Digest": sha(b"nope")},
    ),
    Call(
        "upload monolithic wrong digest",
        "POST",
        f"/v2/{REPO}/blobs/uploads/?digest={{layer}}",
        400,
        "DIGEST_INVALID",
        body=b"other",
    ),
    Call(
        "upload monolithic bad digest",
        "POST",
        f"/v2/{REPO}/blobs/uploads/?digest=md5:00",
        400,
        "DIGEST_INVALID",
        body=b"x",
    ),
    Call(
        "mount",
        "POST",
        f"/v2/{REPO}/blobs/uploads/?mount={{other}}&from=other/repo",
        201,
        want={"Location": f"/v2/{REPO}/blobs/{sha(OTHER_LAYER)}"},
    ),
    Call(
        "mount falls back to a session",
        "POST",
        f"/v2/{REPO}/blobs/uploads/?mount={{missing}}&from=other/repo",
        202,
        want={"Docker-Upload-UUID": None},
    ),
    Call(
        "upload status",
        "GET",
        "{upload}",
        204,
        before=(UPLOAD,),
        want={"Range": "0-0", "Location": None},
    ),
    Call(
        "upload patch",
        "PATCH",
        "{upload}",
        202,
        body=b"abc",
        before=(UPLOAD,),
        headers={"Content-Range": "0-2"},
        want={"Range": "0-2"},
    ),
    Call(
        "upload patch out of order",
        "PATCH",
        "{upload}",
        416,
        "RANGE_INVALID",
        body=b"abc",
        before=(UPLOAD,),
        headers={"Content-Range": "5-7"},
        want={"Range": "0-0"},
    ),
    Call(
        "upload patch repeated",
        "PATCH",
        "{upload}",
        416,
        "RANGE_INVALID",
        body=b"abc",
        before=(UPLOAD, ("PATCH", "{upload}", b"abc")),
        headers={"Content-Range": "0-2"},
        want={"Range": "0-2"},
    ),
    Call(
        "upload patch content-range of 5000 digits",
        "PATCH",
        "{upload}",
        416,
        "RANGE_INVALID",
        body=b"abc",
        before=(UPLOAD,),
        headers={"Content-Range": "0-" + "9" * 5000},
        want={"Range": "0-0"},
    ),
    Call(
        "upload patch wrong length",
        "PATCH",
        "{upload}",
        400,
        "SIZE_INVALID",
        body=b"abc",
        before=(UPLOAD,),
        headers={"Content-Range": "0-9"},
    ),
    Call(
        "upload put",
        "PUT",
        "{upload}?digest={missing}",
        201,
        body=b"nope",
        before=(UPLOAD,),
        want={"Docker-Content-Digest": sha(b"nope")},
    ),
    Call(
        "upload put after patches",
        "PUT",
        "{upload}?digest={missing}",
        201,
        before=(UPLOAD, ("PATCH", "{upload}", b"no"), ("PATCH", "{upload}", b"pe")),
    ),
    Call(
        "upload put wrong digest removes the upload",
        "PUT",
        "{upload}?digest={layer}",
        400,
        "DIGEST_INVALID",
        body=b"wrong",
        before=(UPLOAD,),
        changes_on_error=True,
    ),
    Call("upload put without digest", "PUT", "{upload}", 400, "DIGEST_INVALID", before=(UPLOAD,)),
    Call("upload cancel", "DELETE", "{upload}", 204, before=(UPLOAD,)),
    Call(
        "upload unknown",
        "GET",
        f"/v2/{REPO}/blobs/uploads/{'0' * 8}-0000-0000-0000-{'0' * 12}",
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    Call(
        "upload id with a path",
        "PATCH",
        f"/v2/{REPO}/blobs/uploads/..%2F..%2Fx",
        404,
        "NOT_FOUND",
        body=b"x",
    ),
    Call(
        "upload id not a uuid",
        "PATCH",
        f"/v2/{REPO}/blobs/uploads/..",
        404,
        "BLOB_UPLOAD_UNKNOWN",
        body=b"x",
    ),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_call(call: Call, tmp_path: Path) -> None:
    run_call(call, tmp_path)


def test_blob_get_sends_the_exact_bytes_and_ranges(tmp_path: Path) -> None:
    seed(tmp_path / "root")
    with in_process(tmp_path / "root") as served:
        assert request(served.host, "GET", f"/v2/{REPO}/blobs/{sha(LAYER)}")[2] == LAYER
        got = request(
            served.host, "GET", f"/v2/{REPO}/blobs/{sha(LAYER)}", headers={"Range": "bytes=2-5"}
        )[2]
        assert got == LAYER[2:6]


def test_chunked_upload_then_manifest_push_writes_what_registry_2_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with in_process(root) as served:
        status, headers, _ = request(served.host, *UPLOAD[:2])
        location = headers["Location"]
        conn = http.client.HTTPConnection(served.host)
        conn.putrequest("PATCH", location)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for part in (LAYER[:5], LAYER[5:]):
            conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.send(b"0\r\n\r\n")
        assert conn.getresponse().status == 202
        conn.close()
        assert request(served.host, "PUT", f"{location}?digest={sha(LAYER)}")[0] == 201
        for blob in (CONFIG,):
            status = request(
                served.host, "POST", f"/v2/{REPO}/blobs/uploads/?digest={sha(blob)}", blob
            )[0]
            assert status == 201
        status = request(
            served.host,
            "PUT",
            f"/v2/{REPO}/manifests/latest",
            MANIFEST,
            {"Content-Type": mt.DOCKER_MANIFEST},
        )[0]
        assert status == 201
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    digest = sha(MANIFEST)
    assert {
        paths.blob_data(sha(LAYER)),
        paths.blob_data(digest),
        paths.layer_link(REPO, sha(LAYER)),
        paths.revision_link(REPO, digest),
        paths.tag_current_link(REPO, "latest"),
        paths.tag_index_link(REPO, "latest", digest),
    } <= files
    assert (root / paths.tag_current_link(REPO, "latest")).read_bytes() == digest.encode()
    assert not (root / paths.uploads_dir(REPO)).exists() or not any(
        (root / paths.uploads_dir(REPO)).iterdir()
    )


def test_client_gone_mid_upload_leaves_no_blob_and_the_server_serving(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed(root)
    before = snapshot(root)
    digest = sha(b"x" * 1_000_000)
    with in_process(root) as served:
        sock = socket.create_connection(("127.0.0.1", int(served.host.rsplit(":", 1)[1])))
        sock.sendall(
            f"POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000000\r\n\r\n".encode()
            + b"x" * 1000
        )
        sock.close()
        deadline = time.monotonic() + 5
        while (
            served.server is not None
            and served.server.tracker.active
            and (time.monotonic() < deadline)
        ):
            time.sleep(0.02)
        assert request(served.host, "GET", "/v2/")[0] == 200
    assert snapshot(root) == before
