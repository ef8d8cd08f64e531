"""`regtool serve` with hostile manifests: 1,500 levels deep, or a link naming a 300 MB blob.

A deep manifest stored by the reference registry is served as stored and left out of
referrers listings; pushing one answers 400 MANIFEST_INVALID (was 500). A link naming a
300 MB blob answers MANIFEST_UNKNOWN without reading the blob (was: 300 MB per GET, cached).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from regtool.layout.v1 import paths as v1paths
from regtool.model import mediatype as mt
from tests.conftest import V2_FIXTURE, copy_tree
from tests.server.conftest import subprocess_server
from tests.support.hostile import (
    ACCEPT,
    PEAK_RSS_LIMIT,
    big_sparse_file,
    peak_rss,
    push_deep_manifest,
    tag_big_blob,
    v1_top_image,
)
from tests.support.refregistry import http_request


@pytest.fixture(scope="module")
def deep_served(tmp_path_factory: pytest.TempPathFactory):
    root = copy_tree(V2_FIXTURE, tmp_path_factory.mktemp("deep") / "v2")
    pushed = push_deep_manifest(root)
    with subprocess_server(root) as served:
        yield served, pushed


def error_code(body: bytes) -> str:
    return json.loads(body)["errors"][0]["code"]


@pytest.mark.parametrize("ref", ["deep", "digest"])
def test_stored_deep_manifest_is_served_as_stored(deep_served, ref: str) -> None:
    served, pushed = deep_served
    ref = pushed.digest if ref == "digest" else ref
    url = f"{served.url}/v2/busybox/manifests/{ref}"
    status, body, headers = http_request("GET", url, headers={"Accept": ACCEPT})
    assert status == 200 and body == pushed.raw
    assert headers["Docker-Content-Digest"] == pushed.digest
    status, body, headers = http_request("HEAD", url, headers={"Accept": ACCEPT})
    assert status == 200 and headers["Content-Length"] == str(len(pushed.raw))


def test_referrers_listing_skips_the_deep_manifest(deep_served) -> None:
    served, pushed = deep_served
    status, body, _ = http_request("GET", f"{served.url}/v2/busybox/referrers/{pushed.subject}")
    assert status == 200
    assert [d["digest"] for d in json.loads(body)["manifests"]] == [pushed.shallow]


def test_pushing_a_deep_manifest_is_manifest_invalid(deep_served) -> None:
    served, pushed = deep_served
    status, body, _ = http_request(
        "PUT",
        f"{served.url}/v2/busybox/manifests/again",
        data=pushed.raw,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    )
    assert status == 400 and error_code(body) == "MANIFEST_INVALID"
    assert "nested deeper than 128 levels" in body.decode()
    status, _, _ = http_request("GET", f"{served.url}/v2/busybox/manifests/again")
    assert status == 404


def test_link_to_a_300_mb_blob_is_manifest_unknown_and_never_read(tmp_path: Path) -> None:
    root = copy_tree(V2_FIXTURE, tmp_path / "v2")
    digest = tag_big_blob(root)
    with subprocess_server(root) as served:
        assert served.proc is not None
        urls = [f"{served.url}/v2/busybox/manifests/{ref}" for ref in ("big", digest)] * 2
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda url: http_request("GET", url), urls))
        assert peak_rss(served.proc.pid) < PEAK_RSS_LIMIT
        for status, body, _ in answers:
            assert status == 404 and error_code(body) == "MANIFEST_UNKNOWN"
        status, _, _ = http_request("GET", f"{served.url}/v2/busybox/manifests/latest")
        assert status == 200


def test_v1_image_json_of_300_mb_is_not_served(v1_root: Path) -> None:
    image = v1_top_image(v1_root)
    big_sparse_file(v1_root / v1paths.image_json(image))
    with subprocess_server(v1_root) as served:
        assert served.proc is not None
        status, body, _ = http_request("GET", f"{served.url}/v1/images/{image}/json")
        assert peak_rss(served.proc.pid) < PEAK_RSS_LIMIT
        assert status == 404 and len(body) < 1024
