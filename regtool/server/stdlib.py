"""The HTTP/1.1 transport: `http.server.ThreadingHTTPServer` with a lean request handler.

The handler parses request lines and headers itself (the stock BaseHTTPRequestHandler goes
through the email parser), keeps connections alive, sets TCP_NODELAY (without it Nagle's
algorithm holds small answers back ~40 ms), streams request bodies (Content-Length or
chunked) to the handlers as they arrive, answers `Expect: 100-continue`, sends blob and
layer files with `sendfile(2)`, and writes one access-log line per request.

Framing is strict, as RFC 9112 asks of a server that must not be fooled into reading one
request as two: an over-long request line is a 414; an over-long header line, too many
header lines or too many header bytes a 431 (a line is never split and read on); numbers
are ASCII digits, chunk sizes plain hex; `Transfer-Encoding` other than `chunked` is a
501, and with `Content-Length` a 400; each of these closes the connection. At most
`max_connections` connections are served at once (the others wait in the listen
backlog), and a connection that sends nothing for `idle_timeout` seconds (between
requests or mid-request), or reads nothing of an answer for as long, is closed. On plain
HTTP the kernel keeps those timeouts (SO_RCVTIMEO, SO_SNDTIMEO on a blocking socket), so
no byte moved pays for a Python-level poll; over TLS, Python's socket timeout does.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qsl, unquote

from regtool.server.accesslog import AccessLog
from regtool.server.app import App, error_response
from regtool.server.http import ApiError, Request, Response, parse_count
from regtool.server.metrics import Metrics
from regtool.server.routes import route
from regtool.storage.driver import StorageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_LINE = 65536  # bytes in the request line, a header line or a chunk-size line
MAX_HEADERS = 200
MAX_HEADER_BYTES = 256 << 10  # all header lines of one request together
MAX_BLANK_LINES = 8  # empty lines tolerated before a request line (RFC 9112 2.2)
CHUNK = 1 << 20
STREAM_CHUNK = 1 << 20  # reads of a file sent over TLS or from an object store
SENDFILE_MAX = 1 << 30  # bytes per sendfile(2) call (the kernel moves less anyway)
IDLE_TIMEOUT = 60.0
MAX_CONNECTIONS = 512
DRAIN_LIMIT = 8 << 20
TLS_HANDSHAKE = b"\x16"  # first byte of a TLS ClientHello record
REASONS = {s.value: s.phrase for s in HTTPStatus}
CRLF = (b"\r\n", b"\n")  # RFC 9112 2.2: a bare LF may be read as a line end
# chunk-size [ BWS ";" extensions, ignored ] CRLF; no sign, no 0x, no `_`, at most 16 digits
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")


class BadRequest(Exception):
    """A request the transport refuses: answered with `status`, then the connection closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _bad_body(message: str) -> ApiError:
    """A malformed chunked body: a 400 answer, and the connection is not reused."""
    return ApiError("UNKNOWN", f"malformed chunked body: {message}", status=400)


class _Body:
    """A request body read on demand; sends `100 Continue` first when the client waits."""

    def __init__(
        self, rfile: io.BufferedIOBase, length: int | None, on_start: Callable[[], None] | None
    ) -> None:
        self.rfile = rfile
        self.remaining = length  # None: chunked
        self.done = length == 0
        self.received = 0  # body bytes read so far (for the log and metrics)
        self._on_start: Callable[[], None] | None = on_start

    def _start(self) -> None:
        if self._on_start is not None:
            self._on_start()
            self._on_start = None

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        self._start()
        if self.remaining is None:
            yield from self._chunked(size)
            return
        while self.remaining > 0:
            data = self.rfile.read(min(size, self.remaining))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            self.remaining -= len(data)
            self.received += len(data)
            yield data
        self.done = True

    def _chunked(self, size: int) -> Iterator[bytes]:
        """Decode a chunked body; small chunks (Go clients send 32 KiB ones) are gathered
        into pieces of about `size` bytes, so hashing and writing see few large calls."""
        pending: list[bytes] = []
        held = 0
        readline, read = self.rfile.readline, self.rfile.read
        while not self.done:
            line = readline(MAX_LINE + 1)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise _bad_body("chunk size is not hexadecimal digits")
            left = int(match.group(1), 16)
            if left == 0:
                self._trailers()
                self.done = True
                break
            while left > 0:
                data = read(min(size, left))
                if not data:
                    raise ConnectionError("client closed the connection mid-body")
                left -= len(data)
                self.received += len(data)
                pending.append(data)
                held += len(data)
                if held >= size:
                    yield b"".join(pending)
                    pending, held = [], 0
            if readline(3) not in CRLF:
                raise _bad_body("chunk data longer than its size")
        if pending:
            yield b"".join(pending)

    def _trailers(self) -> None:
        """Skip the trailer fields after the last chunk (bounded like headers)."""
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in CRLF:
                return
            if not line.endswith(b"\n"):
                raise _bad_body("trailer line too long or cut off")
        raise _bad_body("too many trailer lines")

    def read_all(self, limit: int) -> bytes:
        if self.remaining is not None and self.remaining > limit:
            raise ApiError("MANIFEST_INVALID", f"body larger than {limit} bytes", status=413)
        parts, total = [], 0
        for part in self.chunks():
            total += len(part)
            if total > limit:
                raise ApiError("MANIFEST_INVALID", f"body larger than {limit} bytes", status=413)
            parts.append(part)
        return b"".join(parts)


class RegistryHandler(socketserver.StreamRequestHandler):
    rbufsize = 1 << 16
    wbufsize = 0
    timeout = None  # the server's idle_timeout is set in setup(), per socket
    server: RegistryServer

    def setup(self) -> None:
        server = self.server
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if server.ssl_context is None:
            # blocking, the timeouts kept by the kernel: no poll(2) before every recv and
            # no Python loop around sendfile(2) (a Python timeout would add both)
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, server.timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, server.timeval)
            self.connection = sock
            self.rfile = io.BufferedReader(_SocketReader(sock), self.rbufsize)
        else:
            # an ssl socket retries a blocking write that timed out in the kernel forever:
            # TLS keeps Python's timeout (its handshake happens on first read, in handle())
            sock.settimeout(server.idle_timeout)
            sock = server.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
            self.request = self.connection = sock
            self.rfile = sock.makefile("rb", self.rbufsize)  # type: ignore[assignment]
        self.wfile = sock.makefile("wb", 0)  # unused (answers go out by sendall)

    def handle(self) -> None:
        try:
            while self._one():
                pass
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            return

    def _one(self) -> bool:
        if self.rfile.peek(1)[:1] == TLS_HANDSHAKE:  # type: ignore[attr-defined]
            # a client trying HTTPS first (skopeo, podman): fail its handshake at once
            self.connection.sendall(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\n")
            return False
        line = self.rfile.readline(MAX_LINE + 1)
        for _ in range(MAX_BLANK_LINES):
            if line not in CRLF:
                break
            line = self.rfile.readline(MAX_LINE + 1)
        started = time.perf_counter()
        try:
            if not line.endswith(b"\n"):
                if len(line) > MAX_LINE:
                    raise BadRequest(f"request line longer than {MAX_LINE} bytes", 414)
                return False  # closed, or cut off mid-line
            req, keep_alive = self._parse(line)
        except BadRequest as exc:
            self._refuse(exc, started)
            return False
        with self.server.tracker:  # shutdown waits for the answer and its log line
            response = self.server.app.handle(req)
            body = req.body
            assert isinstance(body, _Body)
            if not body.done:
                keep_alive = keep_alive and self._drain(body)
            self._send(response, req.method == "HEAD", keep_alive)
            self.server.log(self.client_address[0], req, response, started)
        return keep_alive

    def _parse(self, line: bytes) -> tuple[Request, bool]:
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            raise BadRequest("malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise BadRequest("unsupported HTTP version")
        headers = self._headers()
        path, _, query = target.partition("?")
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version != "HTTP/1.0" or "keep-alive" in connection
        )
        length: int | None = 0
        coding = headers.get("transfer-encoding")
        if coding is not None:
            # RFC 9112 6.1 and 6.3: both framings at once (or chunked in HTTP/1.0) is how
            # requests get smuggled past proxies; refuse and close
            if "content-length" in headers:
                raise BadRequest("both Transfer-Encoding and Content-Length sent")
            if version == "HTTP/1.0":
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if coding.strip().lower() != "chunked":
                raise BadRequest(f"Transfer-Encoding {coding[:40]!r} not supported", 501)
            length = None
        elif "content-length" in headers:
            length = parse_count(headers["content-length"])
            if length is None:
                raise BadRequest("Content-Length is not a number")
        expect = headers.get("expect", "").lower() == "100-continue"
        body = _Body(self.rfile, length, self._continue if expect else None)
        req = Request(
            method=method,
            path=unquote(path),
            query=dict(parse_qsl(query, keep_blank_values=True)) if query else {},
            headers=headers,
            body=body,
            client=self.client_address[0],
        )
        return req, keep_alive

    def _headers(self) -> dict[str, str]:
        """The header fields, names lower-cased; a line is never split or read past."""
        headers: dict[str, str] = {}
        readline = self.rfile.readline
        total = 0
        for _ in range(MAX_HEADERS + 1):
            raw = readline(MAX_LINE + 1)
            if raw in CRLF:
                return headers
            if not raw.endswith(b"\n"):
                if len(raw) > MAX_LINE:
                    raise BadRequest(f"header line longer than {MAX_LINE} bytes", 431)
                raise ConnectionError("client closed the connection mid-headers")
            total += len(raw)
            if total > MAX_HEADER_BYTES:
                raise BadRequest(f"headers longer than {MAX_HEADER_BYTES} bytes in all", 431)
            name, sep, value = raw.decode("latin-1").partition(":")
            key = name.lower()
            # no blank around the name (RFC 9112 5.1) and no folded continuation lines
            if not sep or not key or key[0] in " \t" or key[-1] in " \t":
                raise BadRequest("malformed header line")
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise BadRequest(f"more than {MAX_HEADERS} header lines", 431)

    def _refuse(self, exc: BadRequest, started: float) -> None:
        """Answer a request the transport refused (spec error JSON) and log it."""
        response = error_response(ApiError("UNKNOWN", str(exc), status=exc.status))
        self._send(response, False, False)
        req = Request(method="-", path="-", query={}, headers={})
        self.server.log(self.client_address[0], req, response, started)

    def _continue(self) -> None:
        self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _drain(self, body: _Body) -> bool:
        """Read an unread body (up to a few MiB) so the connection can be reused and the
        client sees the answer; False to close the connection instead."""
        if body._on_start is not None or body.remaining is None or body.remaining > DRAIN_LIMIT:
            return False
        for _ in body.chunks():
            pass
        return True

    def _sendfile(self, response: Response) -> None:
        """Send a file region with sendfile(2) on the blocking socket, in as few calls as
        the kernel allows. A client that stops reading gets no byte further for
        `idle_timeout` (SO_SNDTIMEO): the call fails with EAGAIN and the connection is
        dropped. TLS, and a handle that is no file (an object store's ranged reader), are
        streamed."""
        handle = response.file
        assert handle is not None
        try:
            fd = handle.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation is both
            fd = -1
        if fd < 0 or isinstance(self.connection, ssl.SSLSocket):
            self._stream(response)
            return
        out, offset, left = self.connection.fileno(), response.offset, response.length
        while left > 0:
            try:
                sent = os.sendfile(out, fd, offset, min(left, SENDFILE_MAX))
            except BlockingIOError:  # SO_SNDTIMEO passed with nothing sent
                raise TimeoutError("client read nothing within the idle timeout") from None
            if sent == 0:
                sys.stderr.write(f"storage error mid-body: file ended {left} bytes early\n")
                raise ConnectionAbortedError("file ended early")
            offset += sent
            left -= sent

    def _stream(self, response: Response) -> None:
        """Copy `length` bytes from `offset` of a readable handle to the client. The
        headers are out: a storage error now can only be logged and the connection
        closed (the client sees a short body)."""
        handle, left = response.file, response.length
        assert handle is not None
        sendall = self.connection.sendall
        try:
            if response.offset:
                handle.seek(response.offset)
            while left > 0:
                data = handle.read(min(STREAM_CHUNK, left))
                if not data:
                    raise StorageError("-", f"ended {left} bytes early")
                sendall(data)
                left -= len(data)
        except StorageError as exc:
            sys.stderr.write(f"storage error mid-body: {exc}\n")
            raise ConnectionAbortedError(str(exc)) from None

    def _send(self, response: Response, head: bool, keep_alive: bool) -> None:
        headers = response.headers
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {response.content_length}")
        lines.append(f"Date: {self.server.date()}")
        if not keep_alive:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self.connection
        try:
            if head:
                sock.sendall(data)
            elif response.file is not None:
                sock.sendall(data)
                self._sendfile(response)
            else:
                sock.sendall(data + response.body)
        finally:
            if response.file is not None:
                response.file.close()


class _SocketReader(io.RawIOBase):
    """The raw reader under a blocking socket's buffered reader: when the kernel's receive
    timeout (SO_RCVTIMEO) passes with nothing read, recv fails with EAGAIN, which this
    raises as TimeoutError (socket.SocketIO would return None, which reads as a short
    read)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._recv_into = sock.recv_into

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            return self._recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("no data within the idle timeout") from None


def timeval(seconds: float) -> bytes:
    """`seconds` as the struct timeval that SO_RCVTIMEO and SO_SNDTIMEO take (at least 1 µs:
    zero would mean no timeout at all)."""
    whole, micros = divmod(max(round(seconds * 1_000_000), 1), 1_000_000)
    return struct.pack("@ll", whole, micros)


class _Tracker:
    """Counts requests being handled, so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.active = 0
        self._cond = threading.Condition()

    def __enter__(self) -> None:
        with self._cond:
            self.active += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self.active -= 1
            if self.active == 0:  # the one state wait_idle waits for
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.active == 0, timeout)


class RegistryServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        ssl_context: ssl.SSLContext | None = None,
        access_log: BinaryIO | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        log_format: str = "plain",
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.timeval = timeval(idle_timeout)  # for SO_RCVTIMEO and SO_SNDTIMEO
        self.max_connections = max_connections
        # one slot per connection being served; taken before accept(), so that beyond the
        # cap new connections wait in the kernel's listen backlog instead of taking threads
        self._slots = threading.BoundedSemaphore(max_connections)
        self.tracker = _Tracker()
        self.access_log = AccessLog(access_log, log_format)
        self.metrics = metrics
        self._date = (0, "")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, RegistryHandler)

    def get_request(self) -> tuple[socket.socket, object]:
        # serve_forever calls this when a connection waits; with every slot taken, give up
        # after a moment (OSError: it polls again, and still sees shutdown requests)
        if not self._slots.acquire(timeout=0.1):
            raise OSError("connection limit reached")
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def shutdown_request(self, request: object) -> None:
        # called exactly once for every accepted connection, whatever became of it
        try:
            super().shutdown_request(request)  # type: ignore[arg-type]
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """Connections that break are the client's business; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def date(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    def log(self, client: str, req: Request, response: Response, started: float) -> None:
        """The request's access-log line and metrics."""
        if self.access_log.stream is None and self.metrics is None:
            return
        seconds = time.perf_counter() - started
        endpoint = endpoint_of(req.path)
        received = getattr(req.body, "received", 0)
        sent = 0 if req.method == "HEAD" else response.content_length
        if self.metrics is not None:
            self.metrics.observe(req.method, endpoint, response.status, seconds, received, sent)
        self.access_log.request(client, req, response, seconds, endpoint, received)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        scheme = "https" if self.ssl_context is not None else "http"
        shown = f"[{host}]" if ":" in str(host) else host
        return f"{scheme}://{shown}:{port}"


def endpoint_of(path: str) -> str:
    """The route label of a request (a bounded set: never the path itself)."""
    if path in ("/healthz", "/metrics"):
        return path[1:]
    if path == "-":
        return "malformed"
    return route(path).endpoint


def serve_until_signalled(
    server: RegistryServer, announce: Callable[[], None] = lambda: None, grace: float = 10.0
) -> None:
    """Serve until SIGTERM or Ctrl-C; then stop accepting and let running requests finish.

    `announce` runs once the signal handlers are in place (so a client that reacts to the
    announcement by stopping us is handled cleanly).
    """
    stop = threading.Event()

    def _signalled(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, _signalled) for s in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, args=(0.1,), name="accept", daemon=True)
    worker.start()
    try:
        announce()
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.tracker.wait_idle(grace)
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.stdout.flush()
