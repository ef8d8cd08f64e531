"""A loopback TCP relay in front of an endpoint, for what a real network does to clients:
count and keep the bytes that pass, and die (`cut`) on demand or when `watch` says so."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from urllib.parse import urlsplit


class Relay:
    """Relays 127.0.0.1:`port` (`endpoint`) to `upstream` ("http://host:port").

    `sent` keeps what clients sent (request lines and headers to inspect), `received`
    counts the bytes the upstream answered. `watch` sees every chunk a client sends before
    it is relayed; when it returns False the relay is cut instead (an endpoint dying at a
    chosen request). `cut()` closes every connection and refuses new ones.
    """

    def __init__(self, upstream: str, watch: Callable[[bytes], bool] | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.watch = watch
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.sent = bytearray()
        self.received = 0
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def cut(self) -> None:
        self.dead.set()
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close alone does not
        self.listener.close()
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            with self.lock:
                self.sockets += [client, upstream]
            for args in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, answer: bool) -> None:
        with suppress(OSError):
            while not self.dead.is_set():
                data = source.recv(65536)
                if not data:
                    break
                with self.lock:
                    if answer:
                        self.received += len(data)
                    else:
                        self.sent += data
                if not answer and self.watch is not None and not self.watch(data):
                    self.cut()
                    return
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)
