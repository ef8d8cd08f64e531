"""`GET /healthz`: whether the storage can be read (and, on a writable server, written),
by a cheap probe whose answer is kept for a few seconds.

The probe lists the storage's top folder, and where the server writes, puts, reads back
and deletes a small object under `.regtool/` (regtool's own bookkeeping folder, never
`docker/`), named for this host and process so that instances on one bucket do not meet.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable

from regtool.layout.store import Store
from regtool.server.http import Response
from regtool.storage.driver import PathNotFound, StorageError

TTL = 5.0  # seconds a probe's answer is reused
PROBE_FOLDER = ".regtool/healthz"


class Health:
    def __init__(
        self,
        store: Store,
        *,
        writable: bool,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.writable = writable
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._answer: tuple[float, str | None] | None = None  # (when, reason or None)
        name = f"{socket.gethostname()}-{os.getpid()}".replace("/", "_")
        self.key = f"{PROBE_FOLDER}/{name}"

    def problem(self) -> str | None:
        """None when healthy, else why not (probed at most once per `ttl`)."""
        with self._lock:
            now = self.clock()
            if self._answer is not None and now - self._answer[0] < self.ttl:
                return self._answer[1]
            reason = self._probe()
            self._answer = (now, reason)
            return reason

    def _probe(self) -> str | None:
        driver = self.store.driver
        try:
            driver.list("")
        except PathNotFound:
            pass
        except (StorageError, OSError) as exc:
            return f"storage not readable: {exc}"
        if not self.writable:
            return None
        stamp = str(time.time()).encode()
        try:
            driver.put(self.key, stamp)
            if driver.get(self.key, 64) != stamp:
                return "storage not readable: a probe read back other bytes than written"
            driver.delete(self.key)
        except (StorageError, OSError) as exc:
            return f"storage not writable: {exc}"
        return None

    def response(self) -> Response:
        reason = self.problem()
        if reason is None:
            body = {"status": "ok"}
            status = 200
        else:
            body = {"status": "unavailable", "reason": reason}
            status = 503
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return Response(status, headers, (json.dumps(body) + "\n").encode())
