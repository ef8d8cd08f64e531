"""serve on a storage holding links: listings answer with the real repositories, never 500."""

from __future__ import annotations

import json
from pathlib import Path

from regtool.layout.v2 import paths as v2paths
from tests.conftest import FIXTURES
from tests.server.conftest import in_process
from tests.support.refregistry import http_json, http_request

CATALOG = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())["catalog"]


def plant_links(root: Path, outside: Path) -> None:
    (root / v2paths.repository("loop")).symlink_to("..")
    (outside / "_layers").mkdir(parents=True)
    (outside / "_manifests").mkdir()
    (root / v2paths.repository("elsewhere")).symlink_to(outside)


def test_catalog_and_v1_search_list_the_real_repositories_beside_links(v2_copy, tmp_path):
    plant_links(v2_copy, tmp_path / "outside")
    with in_process(v2_copy) as served:
        status, doc, _headers = http_json(f"{served.url}/v2/_catalog")
        assert status == 200
        assert doc["repositories"] == CATALOG
        status, doc, _headers = http_json(f"{served.url}/v1/search?q=")
        assert status == 200
        assert [result["name"] for result in doc["results"]] == CATALOG
        status, _doc, _headers = http_json(f"{served.url}/v2/loop/tags/list")
        assert status == 404


def test_a_blob_whose_data_links_outside_is_not_served(v2_copy, tmp_path):
    layer = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())["manifests"]
    digest = layer["busybox:latest"]["layers"][0]
    secret = tmp_path / "secret"
    secret.write_bytes(b"a file outside the storage")
    data = v2_copy / v2paths.blob_data(digest)
    data.unlink()
    data.symlink_to(secret)
    with in_process(v2_copy) as served:
        status, body, _headers = http_request("GET", f"{served.url}/v2/busybox/blobs/{digest}")
    assert status == 404
    assert b"outside the storage" not in body
