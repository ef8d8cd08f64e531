"""The HTTP transport: keep-alive, 100-continue, bad request lines, HTTPS-first clients."""

from __future__ import annotations

import socket
from pathlib import Path

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
