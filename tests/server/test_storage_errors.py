"""Storage errors other than a full disk (issue 8): a folder the server may not read answers
500 with the error logged, never 404 or a *_UNKNOWN code that would tell the client the
object does not exist. The server runs as a subprocess; as root it runs without the
capabilities that let root ignore file modes, so `chmod 000` bites as it would for the
registry's own user."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from tests.server.apicalls import LAYER, MANIFEST, REPO, UPLOAD, request, seed, sha
from tests.server.conftest import Served, subprocess_server

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _without_file_mode_override() -> None:
    """Runs in the child before exec: root keeps uid 0 but obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@dataclass(frozen=True)
class Store:
    served: Served
    upload: str  # an open session's location


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("errors") / "root"
    seed(root)
    drop = _without_file_mode_override if os.geteuid() == 0 else None
    with subprocess_server(root, preexec_fn=drop) as served:
        status, headers, _ = request(served.host, *UPLOAD[:2])
        assert status == 202
        yield Store(served, headers["Location"])


@dataclass(frozen=True)
class Case:
    name: str
    folder: str  # made unreadable (mode 000) or read-only (555) for the request
    method: str
    path: str
    mode: int = 0
    body: bytes = b""
    content_type: str = ""


def _upload_dir(location: str) -> str:
    return paths.upload_dir(REPO, location.rsplit("/", 1)[1])


CASES = [
    Case(
        "blob get, blob folder unreadable",
        paths.blob_data(sha(LAYER)).rsplit("/", 2)[0],
        "GET",
        f"/v2/{REPO}/blobs/{sha(LAYER)}",
    ),
    Case(
        "blob head, layer links unreadable",
        paths.layer_link(REPO, sha(LAYER)).rsplit("/", 2)[0],
        "HEAD",
        f"/v2/{REPO}/blobs/{sha(LAYER)}",
    ),
    Case(
        "manifest get by digest, revisions unreadable",
        paths.revision_link(REPO, sha(MANIFEST)).rsplit("/", 2)[0],
        "GET",
        f"/v2/{REPO}/manifests/{sha(MANIFEST)}",
    ),
    Case(
        "manifest get by tag, tag link unreadable",
        paths.tag_current_link(REPO, "latest").rsplit("/", 1)[0],
        "GET",
        f"/v2/{REPO}/manifests/latest",
    ),
    Case(
        "manifest put, layer links unreadable",
        paths.layer_link(REPO, sha(LAYER)).rsplit("/", 2)[0],
        "PUT",
        f"/v2/{REPO}/manifests/again",
        body=MANIFEST,
        content_type=mt.DOCKER_MANIFEST,
    ),
    Case("upload status, session unreadable", "{upload}", "GET", "{upload}"),
    Case("upload patch, session unreadable", "{upload}", "PATCH", "{upload}", body=b"x"),
    Case(
        "upload patch, session data read-only",
        "{upload}/data",
        "PATCH",
        "{upload}",
        mode=0o444,
        body=b"x",
    ),
    Case(
        "monolithic upload, uploads folder read-only",
        paths.uploads_dir(REPO),
        "POST",
        f"/v2/{REPO}/blobs/uploads/?digest={sha(b'x')}",
        mode=0o555,
        body=b"x",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_storage_error_answers_500_and_is_logged(store: Store, case: Case) -> None:
    served = store.served
    folder = served.root / case.folder.replace("{upload}", _upload_dir(store.upload))
    path = case.path.replace("{upload}", store.upload)
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    assert served.log is not None
    logged = served.log.stat().st_size
    mode = folder.stat().st_mode & 0o7777
    folder.chmod(case.mode)
    try:
        status, _, body = request(served.host, case.method, path, case.body, headers)
    finally:
        folder.chmod(mode)
    assert status == 500, body
    if case.method != "HEAD":
        error = json.loads(body)["errors"][0]
        assert (error["code"], error["message"]) == ("UNKNOWN", "storage error")
    log = served.log.read_text()[logged:]
    assert "storage error" in log and "Permission denied" in log
    assert "Traceback" not in log
    # nothing was written, so the open session is kept as it was
    status, headers, _ = request(served.host, "GET", store.upload)
    assert (status, headers["Range"]) == (204, "0-0")
