"""Large blob transfers through the HTTP transport: integrity (sha256 of what comes back),
and clients that stall mid-GET or mid-PUT (dropped after the idle timeout, the others
served, nothing half-written committed), on plain HTTP and over TLS."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regtool.layout.v2 import paths
from regtool.server.stdlib import timeval
from regtool.server.tls import ensure_auto_tls, server_context
from tests.server.conftest import in_process

MIB = 1 << 20
# far beyond what the kernel buffers on both ends of a loopback connection (the server's
# send buffer grows to 4 MiB; the stalling client's receive buffer is kept small)
BIG = 24 * MIB
PING = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def blob() -> bytes:
    return os.urandom(BIG)


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def serving(root: Path, scheme: str, **limits: object) -> Iterator[tuple[str, ssl.SSLContext]]:
    """The server over `scheme`; yields its host and a client context trusting it."""
    client = ssl.create_default_context()
    if scheme == "https":
        files = ensure_auto_tls(root.parent / "tls", ["127.0.0.1"])
        limits["ssl_context"] = server_context(files.server_cert, files.server_key)
        client.load_verify_locations(files.ca_cert)
    with in_process(root, **limits) as served:
        yield served.host, client


def connect(host: str, client: ssl.SSLContext | None, rcvbuf: int = 0) -> socket.socket:
    address, port = host.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect(): it bounds the window the server may fill
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((address, int(port)))
    if client is None:
        return sock
    return client.wrap_socket(sock, server_hostname=address)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and headers, and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"closed before the answer's head: {data!r}"
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_until_closed(sock: socket.socket) -> bytes:
    parts = []
    try:
        while part := sock.recv(1 << 20):
            parts.append(part)
    except (ConnectionResetError, ssl.SSLError):  # closed with bytes still on their way
        pass
    return b"".join(parts)


def read_body(sock: socket.socket, length: int) -> bytes:
    head, body = read_head(sock)
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 206 ")), head
    assert f"Content-Length: {length}".encode() in head
    parts, got = [body], len(body)
    while got < length:
        part = sock.recv(min(1 << 20, length - got))
        assert part, f"closed after {got} of {length} bytes"
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_request(digest: str, length: int) -> bytes:
    """A monolithic upload (POST with the digest) of `length` bytes."""
    return (
        f"POST /v2/big/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: x\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def put_blob(host: str, client: ssl.SSLContext | None, data: bytes) -> str:
    digest = sha(data)
    with connect(host, client) as sock:
        sock.sendall(put_request(digest, len(data)))
        sock.sendall(data)
        head, _ = read_head(sock)
    assert head.startswith(b"HTTP/1.1 201 "), head
    return digest


def get_request(digest: str, extra: str = "") -> bytes:
    return f"GET /v2/big/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def context_for(scheme: str, client: ssl.SSLContext) -> ssl.SSLContext | None:
    return client if scheme == "https" else None


def test_large_blob_comes_back_whole_and_in_ranges(
    tmp_path: Path, scheme: str, blob: bytes
) -> None:
    with serving(tmp_path / "root", scheme) as (host, client):
        tls = context_for(scheme, client)
        digest = put_blob(host, tls, blob)
        assert (tmp_path / "root" / paths.blob_data(digest)).stat().st_size == BIG
        with connect(host, tls) as sock:  # two answers on one keep-alive connection
            sock.sendall(get_request(digest))
            assert sha(read_body(sock, BIG)) == digest
            start, end = 5 * MIB + 3, 17 * MIB + 11
            sock.sendall(get_request(digest, f"Range: bytes={start}-{end}\r\n"))
            assert read_body(sock, end - start + 1) == blob[start : end + 1]


def test_large_chunked_upload_is_stored_whole(tmp_path: Path, blob: bytes) -> None:
    digest = sha(blob)
    with in_process(tmp_path / "root") as served, connect(served.host, None) as sock:
        sock.sendall(
            f"POST /v2/big/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
            "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for at in range(0, BIG, 3 * MIB + 17):  # odd sizes: pieces straddle the reads
            piece = blob[at : at + 3 * MIB + 17]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        head, _ = read_head(sock)
    assert head.startswith(b"HTTP/1.1 201 "), head
    stored = tmp_path / "root" / paths.blob_data(digest)
    assert sha(stored.read_bytes()) == digest


def test_client_that_stops_reading_mid_get_is_dropped_and_the_next_one_served(
    tmp_path: Path, scheme: str, blob: bytes
) -> None:
    # one connection at a time: the second client is answered only once the server has
    # given up on the first one (before, a plain-HTTP reader that stalled held it forever)
    with serving(tmp_path / "root", scheme) as (host, client):
        digest = put_blob(host, context_for(scheme, client), blob)
    with serving(tmp_path / "root", scheme, idle_timeout=0.3, max_connections=1) as (
        host,
        client,
    ):
        tls = context_for(scheme, client)
        with connect(host, tls, rcvbuf=64 << 10) as stalled:
            stalled.sendall(get_request(digest))
            head, _ = read_head(stalled)  # then reads nothing more for a while
            assert head.startswith(b"HTTP/1.1 200 ")
            with connect(host, tls) as other:
                other.sendall(PING)
                assert read_head(other)[0].startswith(b"HTTP/1.1 200 ")
            received = read_until_closed(stalled)  # what was buffered, then the close
        assert len(received) < BIG - (1 << 20)


def test_stalled_reader_does_not_hold_up_other_clients(tmp_path: Path, blob: bytes) -> None:
    with in_process(tmp_path / "root", idle_timeout=30) as served:
        digest = put_blob(served.host, None, blob)
        with connect(served.host, None, rcvbuf=64 << 10) as stalled:
            stalled.sendall(get_request(digest))
            read_head(stalled)
            for _ in range(3):
                with connect(served.host, None) as other:
                    other.settimeout(0.5)  # answered at once, beside the stalled GET
                    other.sendall(PING)
                    assert read_head(other)[0].startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("framing", ["content-length", "chunked", "session-put"])
def test_client_that_stops_sending_mid_put_is_dropped_and_nothing_is_committed(
    tmp_path: Path, scheme: str, blob: bytes, framing: str
) -> None:
    digest = sha(blob)
    root = tmp_path / "root"
    with serving(root, scheme, idle_timeout=0.3, max_connections=1) as (host, client):
        tls = context_for(scheme, client)
        with connect(host, tls) as stalled:
            if framing == "chunked":
                stalled.sendall(
                    f"POST /v2/big/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
                    "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                )
                stalled.sendall(b"%x\r\n" % BIG + blob[: BIG // 2])
            elif framing == "session-put":  # the last PUT of an upload session
                stalled.sendall(b"POST /v2/big/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n\r\n")
                head, _ = read_head(stalled)
                assert head.startswith(b"HTTP/1.1 202 "), head
                location = next(
                    line.split(b": ", 1)[1].decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"location: ")
                )
                stalled.sendall(
                    f"PUT {location}?digest={digest} HTTP/1.1\r\n"
                    f"Host: x\r\nContent-Length: {BIG}\r\n\r\n".encode()
                    + blob[: BIG // 2]
                )
            else:
                stalled.sendall(put_request(digest, BIG) + blob[: BIG // 2])
            with connect(host, tls) as other:  # served once the stalled upload is dropped
                other.sendall(PING)
                assert read_head(other)[0].startswith(b"HTTP/1.1 200 ")
            assert read_until_closed(stalled) == b""  # no answer: the connection is closed
        uploads = root / paths.uploads_dir("big")
        assert not uploads.exists() or list(uploads.iterdir()) == []
        assert not (root / paths.blob_data(digest)).exists()
        assert not (root / paths.layer_link("big", digest)).exists()


@pytest.mark.parametrize(
    ("seconds", "parts"),
    [(60.0, (60, 0)), (0.3, (0, 300000)), (1.25, (1, 250000)), (0.9999999, (1, 0)), (0, (0, 1))],
)
def test_timeval_holds_the_seconds_and_microseconds(seconds: float, parts: tuple[int, int]) -> None:
    assert struct.unpack("@ll", timeval(seconds)) == parts
    with socket.socket() as probe:  # a struct the kernel takes
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(seconds))
