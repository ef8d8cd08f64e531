"""What a pushed manifest may point at (issue 8): descriptors of the right size, `urls` only
on foreign layers and only http(s). Calls run on the API table's storage (apicalls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool.model import mediatype as mt
from tests.server.apicalls import (
    CONFIG,
    EMPTY,
    LAYER,
    MANIFEST,
    REPO,
    Call,
    desc,
    image,
    index,
    request,
    run_call,
    seed,
    sha,
)
from tests.server.conftest import in_process
from tests.support.refregistry import http_request, reference_registry

NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
ABSENT = b"a foreign layer nobody uploaded"
AMD64 = {"platform": {"os": "linux", "architecture": "amd64"}}

LAYER_TOO_BIG = image([desc(mt.DOCKER_LAYER, LAYER) | {"size": 1 << 30}])
LAYER_TOO_SMALL = image([desc(mt.DOCKER_LAYER, LAYER) | {"size": 1}])
CONFIG_WRONG_SIZE = image(
    [desc(mt.DOCKER_LAYER, LAYER)], desc(mt.DOCKER_CONFIG, CONFIG) | {"size": 3}
)
CHILD_WRONG_SIZE = index([desc(mt.DOCKER_MANIFEST, MANIFEST) | {"size": 5} | AMD64])
FOREIGN_FILE_URL = image([desc(mt.DOCKER_FOREIGN_LAYER, ABSENT) | {"urls": ["file:///etc/shadow"]}])
FOREIGN_MIXED_URLS = image(
    [desc(mt.DOCKER_FOREIGN_LAYER, ABSENT) | {"urls": ["https://example.com/l", "ftp://x/l"]}]
)
FOREIGN_HTTP_URL = image(
    [
        desc(mt.DOCKER_LAYER, LAYER),
        desc(mt.DOCKER_FOREIGN_LAYER, ABSENT) | {"urls": ["https://example.com/layer"]},
    ]
)
NONDISTRIBUTABLE_HTTP_URL = image(
    [desc(NONDISTRIBUTABLE, ABSENT) | {"urls": ["http://example.com/layer"]}],
    media_type=mt.OCI_MANIFEST,
)
FOREIGN_WITHOUT_URLS = image([desc(mt.DOCKER_FOREIGN_LAYER, ABSENT)])
LAYER_WITH_URL_ABSENT = image(
    [desc(mt.DOCKER_LAYER, ABSENT) | {"urls": ["https://example.com/layer"]}]
)
OCI_LAYER_WITH_URL_ABSENT = image(
    [desc(mt.OCI_LAYER_GZIP, ABSENT) | {"urls": ["https://example.com/layer"]}],
    media_type=mt.OCI_MANIFEST,
)
CONFIG_WITH_URL_ABSENT = image(
    [], desc(mt.OCI_CONFIG, ABSENT) | {"urls": ["https://example.com/c"]}, mt.OCI_MANIFEST
)
LAYER_WITH_URL_PRESENT = image(
    [desc(mt.DOCKER_LAYER, LAYER) | {"urls": ["file:///ignored/for/a/stored/layer"]}]
)
EMPTY_CONFIG_OK = image(
    [desc(mt.OCI_EMPTY, EMPTY)], desc(mt.OCI_EMPTY, EMPTY), media_type=mt.OCI_MANIFEST
)


def put(name: str, body: bytes, status: int, code: str | None = None) -> Call:
    return Call(
        name,
        "PUT",
        f"/v2/{REPO}/manifests/pushed",
        status,
        code,
        body=body,
        headers={"Content-Type": json.loads(body)["mediaType"]},
    )


CALLS = [
    put("layer size larger than the blob", LAYER_TOO_BIG, 400, "MANIFEST_INVALID"),
    put("layer size smaller than the blob", LAYER_TOO_SMALL, 400, "MANIFEST_INVALID"),
    put("config size wrong", CONFIG_WRONG_SIZE, 400, "MANIFEST_INVALID"),
    put("index child size wrong", CHILD_WRONG_SIZE, 400, "MANIFEST_INVALID"),
    put("foreign layer with a file url", FOREIGN_FILE_URL, 400, "MANIFEST_INVALID"),
    put("foreign layer with an ftp url among others", FOREIGN_MIXED_URLS, 400, "MANIFEST_INVALID"),
    put(
        "foreign layer without urls not stored", FOREIGN_WITHOUT_URLS, 400, "MANIFEST_BLOB_UNKNOWN"
    ),
    put("layer with urls not stored", LAYER_WITH_URL_ABSENT, 400, "MANIFEST_BLOB_UNKNOWN"),
    put("oci layer with urls not stored", OCI_LAYER_WITH_URL_ABSENT, 400, "MANIFEST_BLOB_UNKNOWN"),
    put("config with urls not stored", CONFIG_WITH_URL_ABSENT, 400, "MANIFEST_BLOB_UNKNOWN"),
    put("foreign layer with an https url", FOREIGN_HTTP_URL, 201),
    put("oci non-distributable layer with an http url", NONDISTRIBUTABLE_HTTP_URL, 201),
    put("stored layer with urls", LAYER_WITH_URL_PRESENT, 201),
    put("sizes that match", EMPTY_CONFIG_OK, 201),
    put("index whose child size matches", index([desc(mt.DOCKER_MANIFEST, MANIFEST) | AMD64]), 201),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_call(call: Call, tmp_path: Path) -> None:
    run_call(call, tmp_path)


def test_size_refusal_names_the_descriptor_and_both_sizes(tmp_path: Path) -> None:
    seed(tmp_path / "root")
    with in_process(tmp_path / "root") as served:
        status, _, body = request(
            served.host,
            "PUT",
            f"/v2/{REPO}/manifests/pushed",
            LAYER_TOO_BIG,
            {"Content-Type": mt.DOCKER_MANIFEST},
        )
    error = json.loads(body)["errors"][0]
    assert status == 400
    assert "SIZE_INVALID" in error["message"]
    assert error["detail"] == {"digest": sha(LAYER), "size": 1 << 30, "stored": len(LAYER)}


# manifests the reference registry (2.8.2, default config) refuses too; it accepts the
# wrong sizes and the URLs on other descriptors that regtool refuses (see the calls above)
BOTH_REFUSE = {
    "foreign file url": FOREIGN_FILE_URL,
    "foreign layer without urls": FOREIGN_WITHOUT_URLS,
    "oci layer with urls not stored": OCI_LAYER_WITH_URL_ABSENT,
}


def test_the_reference_registry_refuses_these_as_well(tmp_path: Path) -> None:
    seed(tmp_path / "ref")
    seed(tmp_path / "ours")
    with reference_registry(tmp_path / "ref") as ref, in_process(tmp_path / "ours") as ours:
        for name, body in BOTH_REFUSE.items():
            headers = {"Content-Type": json.loads(body)["mediaType"]}
            theirs = http_request(
                "PUT", f"{ref.url}/v2/{REPO}/manifests/pushed", data=body, headers=headers
            )[0]
            mine = request(ours.host, "PUT", f"/v2/{REPO}/manifests/pushed", body, headers)[0]
            assert theirs >= 400, name
            assert mine == 400, name
