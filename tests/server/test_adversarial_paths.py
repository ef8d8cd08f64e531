"""URL paths, queries and headers built to make pattern matching slow, sent to `regtool serve`.

Each is answered (an error) within the bound; with the old repository-name pattern the
first request held a server thread for minutes, without credentials.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import quote

import pytest

from tests.server.conftest import FIXTURE_V2, copy_fixture, subprocess_server
from tests.support.timing import BOUND, GIVE_UP

BLOB = "sha256:" + "0" * 64
UPLOAD = "00000000-0000-0000-0000-000000000000"


def near_miss(unit: str, length: int = 254, tail: str = "!") -> str:
    return (unit * (length // len(unit) + 1))[:length] + tail


REQUESTS: list[tuple[str, dict[str, str], set[int]]] = [
    (f"/v2/{'a' * 40}!/tags/list", {}, {400}),  # the report's example
    (f"/v2/{near_miss('a')}/tags/list", {}, {400}),
    (f"/v2/{near_miss('a-')}/manifests/latest", {}, {400}),
    (f"/v2/{near_miss('a__')}/blobs/{BLOB}", {}, {400}),
    (f"/v2/{near_miss('a/')}/referrers/{BLOB}", {}, {400}),
    (f"/v2/{near_miss('a.')}/blobs/uploads/{UPLOAD}", {}, {400}),
    (f"/v2/{near_miss('a/', 10_000)}/tags/list", {}, {400}),
    (f"/v2/{near_miss('a', 10_000, '')}", {}, {404}),
    (f"/v2/busybox/manifests/{near_miss('a', 10_000)}", {}, {400, 404}),
    (f"/v2/busybox/manifests/sha256:{near_miss('a', 10_000)}", {}, {400, 404}),
    (f"/v2/busybox/blobs/uploads/{near_miss('0-', 10_000)}", {}, {404}),
    (f"/v2/busybox/blobs/{BLOB}", {"Range": "bytes=" + near_miss("1", 10_000, "x")}, {404, 416}),
    (f"/v1/repositories/{near_miss('a-', 10_000)}/tags", {}, {400, 404}),
    (f"/v1/search?q={near_miss('a-', 10_000)}", {}, {200}),
    (f"/v1/images/{near_miss('a', 10_000)}/json", {}, {404}),
]


def timed_get(host: str, path: str, headers: dict[str, str]) -> tuple[float, int | None]:
    """(seconds, status) of one GET on a new connection; (GIVE_UP, None) if no answer."""
    connection = http.client.HTTPConnection(host, timeout=GIVE_UP)
    started = time.perf_counter()
    try:
        connection.request("GET", quote(path, safe="/:?=@!"), headers=headers)
        response = connection.getresponse()
        response.read()
        return time.perf_counter() - started, response.status
    except TimeoutError:
        return GIVE_UP, None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = copy_fixture(FIXTURE_V2, tmp_path_factory.mktemp("names") / "v2")
    with subprocess_server(root) as server:
        yield server


@pytest.mark.parametrize(
    ("path", "headers", "statuses"),
    REQUESTS,
    ids=[f"{p[:16]}..{p[-12:]}-{len(p) + sum(map(len, h.values()))}" for p, h, _ in REQUESTS],
)
def test_serve_answers_near_miss_requests_within_bound(
    served, path: str, headers: dict[str, str], statuses: set[int]
) -> None:
    elapsed, status = timed_get(served.host, path, headers)
    assert elapsed < BOUND and status in statuses
