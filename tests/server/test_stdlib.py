"""The HTTP transport: keep-alive, 100-continue, strict framing, limits, HTTPS-first clients."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from regtool.layout.v2 import paths
from regtool.server.auth import Htpasswd, set_password
from regtool.server.stdlib import MAX_HEADERS, MAX_LINE
from tests.server.conftest import in_process


def exchange(host: str, data: bytes, *, reads: int = 1) -> bytes:
    address, port = host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while received.count(b"HTTP/1.") < reads:
            part = sock.recv(65536)
            if not part:
                break
            received += part
        return received


def test_two_requests_share_one_keep_alive_connection(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        get = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
        answer = exchange(served.host, get + get, reads=2)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert b"Connection: close" not in answer


def test_http_1_0_gets_its_connection_closed(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        answer = exchange(served.host, b"GET /v2/ HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer


def test_expect_100_continue_is_answered_before_the_body_is_read(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        address, port = served.host.rsplit(":", 1)
        with socket.create_connection((address, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /v2/a/blobs/uploads/?digest=sha256:"
                + b"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(b"hello")
            assert sock.recv(65536).startswith(b"HTTP/1.1 201 Created")


def test_malformed_request_line_is_a_400_and_closes(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        answer = exchange(served.host, b"NONSENSE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer


def test_tls_client_hello_on_the_plain_port_fails_at_once(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        answer = exchange(served.host, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert answer.startswith(b"HTTP/1.0 400 Bad Request")


# -- strict framing (issue 8): numbers, line lengths, chunked bodies --------------------

HELLO_DIGEST = "sha256:" + hashlib.sha256(b"hello").hexdigest()
MONOLITHIC = f"POST /v2/a/blobs/uploads/?digest={HELLO_DIGEST} HTTP/1.1\r\nHost: x\r\n".encode()


def until_closed(host: str, data: bytes) -> bytes:
    """Send `data`, then read until the server closes (a socket timeout fails the test:
    the server kept the connection open)."""
    address, port = host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while part := sock.recv(65536):
                received += part
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            pass
        return received


def error_code(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["code"]


def stored(root: Path, data: bytes) -> bool:
    digest = hashlib.sha256(data).hexdigest()
    return (root / paths.blob_data(f"sha256:{digest}")).exists()


@pytest.mark.parametrize(
    "value",
    [b"\xb2", b"9" * 5000, b"\xd9\xa3", b"-1", b"+5", b"5, 5", b"0x5", b""],
    ids=[
        "superscript two",
        "5000 digits",
        "arabic digit",
        "negative",
        "plus",
        "list",
        "hex",
        "empty",
    ],
)
def test_content_length_that_is_not_ascii_digits_is_a_400_and_closes(
    tmp_path: Path, value: bytes
) -> None:
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, MONOLITHIC + b"Content-Length: " + value + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer
        assert error_code(answer) == "UNKNOWN"
        assert exchange(served.host, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200 OK"
        )


def test_authorization_hidden_past_64k_of_a_header_line_is_a_431_not_a_login(
    tmp_path: Path,
) -> None:
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "s3cret")
    credentials = base64.b64encode(b"alice:s3cret").decode()
    pad = b"X-Pad: " + b"a" * (MAX_LINE + 1 - len(b"X-Pad: "))  # exactly where a split falls
    request = (
        b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n"
        + pad
        + f"Authorization: Basic {credentials}\r\n\r\n".encode()
    )
    with in_process(tmp_path / "root", auth=Htpasswd(users)) as served:
        answer = until_closed(served.host, request)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in answer
    assert b"repositories" not in answer


def test_request_line_over_64k_is_a_414_and_closes(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, b"GET /v2/" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 ") and b"Connection: close" in answer


def test_too_many_header_lines_is_a_431_and_closes(tmp_path: Path) -> None:
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, b"GET /v2/ HTTP/1.1\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in answer


def test_headers_over_256k_in_all_are_a_431_and_close(tmp_path: Path) -> None:
    line = b"X-Pad: " + b"a" * (60 << 10) + b"\r\n"  # each line is allowed, not five of them
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, b"GET /v2/ HTTP/1.1\r\n" + line * 5 + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in answer


def test_header_name_with_blank_before_the_colon_is_a_400(tmp_path: Path) -> None:
    with in_process(tmp_path / "root") as served:
        answer = until_closed(
            served.host, MONOLITHIC + b"Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"0_5", b" 5", b"5\x0b", b"-5", b"5 5", b""])
def test_chunk_size_that_is_not_plain_hex_is_a_400_and_stores_nothing(
    tmp_path: Path, size: bytes
) -> None:
    body = size + b"\r\nhello\r\n0\r\n\r\n"
    with in_process(tmp_path / "root") as served:
        answer = until_closed(
            served.host, MONOLITHIC + b"Transfer-Encoding: chunked\r\n\r\n" + body
        )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer
    assert not stored(served.root, b"hello")


def test_chunk_longer_than_its_size_is_a_400(tmp_path: Path) -> None:
    digest = "sha256:" + hashlib.sha256(b"hel").hexdigest()
    head = f"POST /v2/a/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n".encode()
    with in_process(tmp_path / "root") as served:
        answer = until_closed(
            served.host, head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert not stored(served.root, b"hel")


@pytest.mark.parametrize(
    "chunks",
    [
        b"5\r\nhello\r\n0\r\n\r\n",
        b"2;name=value\r\nhe\r\n3 ; x\r\nllo\r\n0\r\n\r\n",  # extensions are ignored
        b"5\nhello\n0\n\n",  # bare LF line ends (RFC 9112 2.2 allows reading them)
        b"00005\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",  # leading zeros, a trailer
        b"5\r\nhello\r\n0;last\r\n\r\n",
    ],
)
def test_valid_chunked_bodies_are_stored(tmp_path: Path, chunks: bytes) -> None:
    request = MONOLITHIC + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    with in_process(tmp_path / "root") as served:
        answer = exchange(served.host, request + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", reads=2)
    assert answer.startswith(b"HTTP/1.1 201 Created"), answer
    assert answer.count(b"HTTP/1.1 200 OK") == 1  # the connection carried on
    assert stored(served.root, b"hello")


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"identity", b"chunked, chunked", b"x"])
def test_transfer_encoding_other_than_chunked_is_a_501_and_closes(
    tmp_path: Path, coding: bytes
) -> None:
    request = MONOLITHIC + b"Transfer-Encoding: " + coding + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, request)
    assert answer.startswith(b"HTTP/1.1 501 ") and b"Connection: close" in answer
    assert answer.count(b"HTTP/1.") == 1
    assert not stored(served.root, b"hello")


def test_transfer_encoding_with_content_length_is_a_400_and_nothing_after_it_is_read(
    tmp_path: Path,
) -> None:
    smuggled = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        MONOLITHIC
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        + smuggled
    )
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, request)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer
    assert answer.count(b"HTTP/1.") == 1  # the request behind it was never answered
    assert not stored(served.root, b"hello")


def test_transfer_encoding_in_http_1_0_is_a_400(tmp_path: Path) -> None:
    request = MONOLITHIC.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n"
    with in_process(tmp_path / "root") as served:
        answer = until_closed(served.host, request + b"5\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert not stored(served.root, b"hello")


# -- resources: a cap on connections, an idle timeout ------------------------------------

GET = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"


def connect(host: str) -> socket.socket:
    address, port = host.rsplit(":", 1)
    return socket.create_connection((address, int(port)), timeout=5)


def test_connections_beyond_the_cap_wait_until_one_closes(tmp_path: Path) -> None:
    with in_process(tmp_path / "root", max_connections=2) as served:
        first, second = connect(served.host), connect(served.host)
        with first, second:
            for sock in (first, second):
                sock.sendall(GET)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
            with connect(served.host) as third:  # the kernel accepts it into the backlog
                third.sendall(GET)
                third.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    third.recv(65536)  # not served while two connections are open
                first.close()
                third.settimeout(5)
                assert third.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with in_process(tmp_path / "root", idle_timeout=0.3) as served, connect(served.host) as sock:
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server, well before our 5 s
        assert time.monotonic() - started >= 0.25


def test_slow_upload_that_keeps_sending_outlives_the_idle_timeout(tmp_path: Path) -> None:
    with in_process(tmp_path / "root", idle_timeout=0.3) as served, connect(served.host) as sock:
        sock.sendall(MONOLITHIC + b"Content-Length: 5\r\n\r\n")
        for byte in b"hello":  # a slow client: 1 s in all, a byte every 0.2 s
            time.sleep(0.2)
            sock.sendall(bytes([byte]))
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 Created")
    assert stored(served.root, b"hello")


def test_upload_stalled_mid_body_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with in_process(tmp_path / "root", idle_timeout=0.3) as served, connect(served.host) as sock:
        sock.sendall(MONOLITHIC + b"Content-Length: 5\r\n\r\nhel")
        assert sock.recv(65536) == b""
        uploads = served.root / paths.uploads_dir("a")
        assert not uploads.exists() or list(uploads.iterdir()) == []
