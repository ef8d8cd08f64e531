"""The server's Prometheus metrics (prometheus-client, the ecosystem's library), kept in a
registry of this server's own (tests start many servers in one process).

A scrape renders counters kept in memory: it never reads the storage. The storage gauges
(`regtool_storage_*`) appear once something calls `set_storage` with figures (the
background storage summary does, after writes and gc).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from regtool.server.http import Response

if TYPE_CHECKING:
    from regtool.server.summary import Summary

disable_created_metrics()  # no `_created` twin of every counter: half the scrape, no use here
CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_CHILDREN = 1024  # (method, route, status) children remembered by observe()
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
# request durations: sub-millisecond manifest GETs up to long blob uploads
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True, slots=True)
class _Figures:
    bytes: int
    blobs: int
    repositories: int
    tags: int


class StorageFigures(Protocol):
    """What the storage gauges show (the background summary's fields)."""

    @property
    def bytes(self) -> int: ...
    @property
    def blobs(self) -> int: ...
    @property
    def repositories(self) -> int: ...
    @property
    def tags(self) -> int: ...


class Metrics:
    def __init__(self, uploads_in_progress: object = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "regtool_http_requests",
            "HTTP requests answered, by method, route and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "regtool_http_request_duration_seconds",
            "Time from the request line to the end of the answer, by route",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.received = Counter(
            "regtool_http_bytes_received", "Request body bytes received", registry=r
        )
        self.sent = Counter("regtool_http_bytes_sent", "Response body bytes sent", registry=r)
        self.uploads = Gauge(
            "regtool_uploads_in_progress",
            "Upload sessions this server opened and that are not finished, cancelled or purged",
            registry=r,
        )
        if uploads_in_progress is not None:
            self.uploads.set_function(uploads_in_progress)  # type: ignore[arg-type]
        self.gc_runs = Counter("regtool_gc_runs", "Background gc runs finished", registry=r)
        self.gc_freed = Counter(
            "regtool_gc_freed_bytes", "Bytes the background gc deleted", registry=r
        )
        self.gc_deleted = Counter(
            "regtool_gc_deleted_entries", "Entries the background gc deleted", registry=r
        )
        self.gc_last = Gauge(
            "regtool_gc_last_run_timestamp_seconds",
            "When the last background gc run finished (Unix time)",
            registry=r,
        )
        self.gc_last_duration = Gauge(
            "regtool_gc_last_run_duration_seconds",
            "How long the last background gc run took",
            registry=r,
        )
        self.purged = Counter(
            "regtool_uploads_purged", "Upload sessions removed by upload purging", registry=r
        )
        self._storage: dict[str, Gauge] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(
        self, method: str, route: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() looks its child up under a lock: once per key
            shown = method if method in METHODS else "other"
            children = (
                self.requests.labels(shown, route, str(status)),
                self.duration.labels(route),
            )
            if len(self._children) < MAX_CHILDREN:  # methods a client makes up: not kept
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if received:
            self.received.inc(received)
        if sent:
            self.sent.inc(sent)

    def gc_run(self, deleted: int, freed: int, finished: float, seconds: float) -> None:
        self.gc_runs.inc()
        self.gc_deleted.inc(deleted)
        self.gc_freed.inc(freed)
        self.gc_last.set(finished)
        self.gc_last_duration.set(seconds)

    def uploads_purged(self, count: int) -> None:
        self.purged.inc(count)

    def set_storage(self, figures: StorageFigures) -> None:
        """The hook for the storage summary: set regtool_storage_{bytes,blobs,repositories,
        tags} from `figures` (the gauges appear on the first call)."""
        for field, help_text in (
            ("bytes", "Bytes the stored blobs hold"),
            ("blobs", "Blobs stored"),
            ("repositories", "Repositories stored"),
            ("tags", "Tags stored"),
        ):
            gauge = self._storage.get(field)
            if gauge is None:
                gauge = Gauge(f"regtool_storage_{field}", help_text, registry=self.registry)
                self._storage[field] = gauge
            gauge.set(getattr(figures, field))

    def set_storage_from(self, summary: Summary) -> None:
        """The storage gauges from the web page's background summary, once it is complete
        (a failed or partial computation leaves them as they were)."""
        if summary.complete and summary.error is None and summary.stored_bytes is not None:
            self.set_storage(
                _Figures(summary.stored_bytes, summary.blobs, summary.repositories, summary.tags)
            )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def response(self) -> Response:
        return Response(200, {"Content-Type": CONTENT_TYPE}, self.render())
