"""The access log: one line per request, and one per background event (gc, purge), on one
stream (stderr). `plain` is a common-log-like line; `json` one JSON object per line:

    {"time": RFC 3339, "remote", "user" (null when anonymous), "method", "path", "route",
     "status", "bytes" (body bytes sent), "received" (body bytes received), "duration_ms",
     "upload" and "digest" where the request has them; on a refused login
     "login_failure": "no credentials" | "malformed header" | "unknown user" |
     "wrong password" | "htpasswd file unreadable", and "login_user", the name tried}
    {"time", "event": "gc" | "purge" | ..., figures of the event}

Neither format ever holds a password or an Authorization header: only the user name
(the plain line ends with `login failed: REASON (user "NAME")` on a refused login).
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO

from regtool.server.http import Request, Response
from regtool.server.routes import route

FORMATS = ("plain", "json")
_UPLOAD_ROUTES = frozenset({"upload", "uploads"})


def rfc3339(when: float) -> str:
    return (
        datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class AccessLog:
    def __init__(self, stream: BinaryIO | None, fmt: str = "plain") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
        self.stream = stream
        self.json = fmt == "json"
        self._lock = threading.Lock()
        self._stamp = (0, "")
        try:  # one write(2) per line, no lock: lines never interleave (nor wait on each other)
            stream.flush()  # type: ignore[union-attr]
            self._fd: int | None = stream.fileno()  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):  # no stream, or no file under it
            self._fd = None

    def write(self, line: str) -> None:
        if self.stream is None:
            return
        data = line.encode()
        if self._fd is not None:
            try:
                while data:  # a line is written whole unless a signal cuts it
                    data = data[os.write(self._fd, data) :]
            except OSError:  # a full disk or a closed pipe: the request still succeeds
                pass
            return
        with self._lock:
            self.stream.write(data)
            self.stream.flush()

    def stamp(self) -> str:
        """The plain format's local time, computed once a second (localtime is not cheap)."""
        now = int(time.time())
        if self._stamp[0] != now:
            self._stamp = (now, time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(now)))
        return self._stamp[1]

    def request(
        self,
        client: str,
        req: Request,
        response: Response,
        seconds: float,
        endpoint: str,
        received: int,
    ) -> None:
        if self.stream is None:
            return
        took = seconds * 1000
        failure = req.login_failure
        if not self.json:
            stamp = self.stamp()
            why = ""
            if failure is not None:
                why = f" login failed: {failure.reason}"
                if failure.user is not None:
                    why += f" (user {json.dumps(failure.user)})"
            self.write(
                f'{client} - {req.user or "-"} [{stamp}] "{req.method} {req.path}" '
                f"{response.status} {response.content_length} {took:.1f}ms{why}\n"
            )
            return
        record: dict[str, Any] = {
            "time": rfc3339(time.time()),
            "remote": client,
            "user": req.user,
            "method": req.method,
            "path": req.path,
            "route": endpoint,
            "status": response.status,
            "bytes": 0 if req.method == "HEAD" else response.content_length,
            "received": received,
            "duration_ms": round(took, 3),
        }
        upload = response.headers.get("Docker-Upload-UUID")
        if upload is None and endpoint in _UPLOAD_ROUTES:
            upload = route(req.path).ref or None
        if upload:
            record["upload"] = upload
        digest = response.headers.get("Docker-Content-Digest") or req.query.get("digest")
        if digest:
            record["digest"] = digest
        if failure is not None:
            record["login_failure"] = failure.reason
            if failure.user is not None:
                record["login_user"] = failure.user
        self.write(json.dumps(record, separators=(",", ":")) + "\n")

    def event(self, name: str, text: str, **figures: Any) -> None:
        """A background event: `text` in the plain format, `figures` in JSON."""
        if self.json:
            record = {"time": rfc3339(time.time()), "event": name, **figures}
            self.write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            self.write(f"{name}: {text}\n")
