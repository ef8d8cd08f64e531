"""Manifest, tag, catalog, referrers, v1 and error calls of the registry API (see apicalls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.server.handlers.context import Options
from regtool.storage.filesystem import FilesystemDriver
from tests.server.apicalls import (
    ARTIFACT,
    DOCKER_ACCEPT,
    HUGE,
    INDEX,
    INDEX_MISSING_CHILD,
    MANIFEST,
    MISSING_BLOB,
    REPO,
    Call,
    request,
    run_call,
    seed,
    sha,
)
from tests.server.conftest import in_process
from tests.support.refregistry import http_json, reference_registry, run_reference_gc

CALLS = [
    Call("base", "GET", "/v2/", 200, want={"Docker-Distribution-API-Version": "registry/2.0"}),
    Call(
        "catalog",
        "GET",
        "/v2/_catalog",
        200,
        json_body={"repositories": ["other/repo", "test/repo"]},
    ),
    Call(
        "catalog paged",
        "GET",
        "/v2/_catalog?n=1",
        200,
        want={"Link": '</v2/_catalog?n=1&last=other/repo>; rel="next"'},
        json_body={"repositories": ["other/repo"]},
    ),
    Call(
        "catalog after last",
        "GET",
        "/v2/_catalog?last=other/repo",
        200,
        json_body={"repositories": ["test/repo"]},
    ),
    Call("catalog bad n", "GET", "/v2/_catalog?n=x", 400, "PAGINATION_NUMBER_INVALID"),
    # '²' and '٣' pass str.isdigit(); int() refuses the first and reads the second as 3
    Call("catalog n superscript", "GET", "/v2/_catalog?n=%C2%B2", 400, "PAGINATION_NUMBER_INVALID"),
    Call(
        "catalog n arabic digit", "GET", "/v2/_catalog?n=%D9%A3", 400, "PAGINATION_NUMBER_INVALID"
    ),
    Call(
        "tags n of 5000 digits",
        "GET",
        f"/v2/{REPO}/tags/list?n={'9' * 5000}",
        400,
        "PAGINATION_NUMBER_INVALID",
    ),
    Call(
        "tags",
        "GET",
        f"/v2/{REPO}/tags/list",
        200,
        json_body={"name": REPO, "tags": ["latest", "sig"]},
    ),
    Call(
        "tags paged",
        "GET",
        f"/v2/{REPO}/tags/list?n=1",
        200,
        want={"Link": f'</v2/{REPO}/tags/list?n=1&last=latest>; rel="next"'},
        json_body={"name": REPO, "tags": ["latest"]},
    ),
    Call("tags unknown repo", "GET", "/v2/nope/tags/list", 404, "NAME_UNKNOWN"),
    Call("tags of a namespace folder", "GET", "/v2/test/tags/list", 404, "NAME_UNKNOWN"),
    Call("name upper case", "GET", "/v2/Test/repo/tags/list", 400, "NAME_INVALID"),
    Call("name dot dot", "GET", "/v2/test/../repo/tags/list", 400, "NAME_INVALID"),
    Call(
        "name escaped dot dot",
        "PUT",
        "/v2/a/%2e%2e/%2e%2e/x/manifests/latest",
        400,
        "NAME_INVALID",
        body=MANIFEST,
    ),
    Call("name too long", "GET", "/v2/{long}/tags/list", 400, "NAME_INVALID"),
    Call(
        "manifest get by tag",
        "GET",
        f"/v2/{REPO}/manifests/latest",
        200,
        headers=DOCKER_ACCEPT,
        want={
            "Content-Type": mt.DOCKER_MANIFEST,
            "Docker-Content-Digest": sha(MANIFEST),
            "Content-Length": str(len(MANIFEST)),
        },
    ),
    Call(
        "manifest head",
        "HEAD",
        f"/v2/{REPO}/manifests/latest",
        200,
        want={"Content-Length": str(len(MANIFEST)), "Docker-Content-Digest": sha(MANIFEST)},
    ),
    Call(
        "manifest get by digest",
        "GET",
        f"/v2/{REPO}/manifests/{{manifest}}",
        200,
        want={"Docker-Content-Digest": sha(MANIFEST)},
    ),
    Call(
        "oci manifest not accepted",
        "GET",
        f"/v2/{REPO}/manifests/sig",
        404,
        "MANIFEST_UNKNOWN",
        headers=DOCKER_ACCEPT,
    ),
    Call(
        "oci manifest without accept",
        "GET",
        f"/v2/{REPO}/manifests/sig",
        200,
        want={"Content-Type": mt.OCI_MANIFEST},
    ),
    Call("manifest unknown tag", "GET", f"/v2/{REPO}/manifests/nope", 404, "MANIFEST_UNKNOWN"),
    Call(
        "manifest unknown digest",
        "GET",
        f"/v2/{REPO}/manifests/{{missing}}",
        404,
        "MANIFEST_UNKNOWN",
    ),
    Call("manifest unknown repo", "GET", "/v2/nope/manifests/latest", 404, "NAME_UNKNOWN"),
    # a tag that cannot exist is simply not there (OCI conformance: pull and push workflows)
    Call("manifest bad tag", "GET", f"/v2/{REPO}/manifests/-bad", 404, "MANIFEST_UNKNOWN"),
    Call(
        "manifest get invalid tag name",
        "GET",
        f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME",
        404,
        "MANIFEST_UNKNOWN",
    ),
    Call(
        "manifest head invalid tag name",
        "HEAD",
        f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME",
        404,
    ),
    Call(
        "manifest get invalid tag name in an unknown repo",
        "GET",
        "/v2/nope/manifests/.INVALID_MANIFEST_NAME",
        404,
        "NAME_UNKNOWN",
    ),
    Call(
        "manifest get tag too long",
        "GET",
        f"/v2/{REPO}/manifests/{{long}}",
        404,
        "MANIFEST_UNKNOWN",
    ),
    Call(
        "manifest put",
        "PUT",
        f"/v2/{REPO}/manifests/v2",
        201,
        body=MANIFEST,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
        want={
            "Docker-Content-Digest": sha(MANIFEST),
            "Location": f"/v2/{REPO}/manifests/{sha(MANIFEST)}",
        },
    ),
    Call(
        "manifest put by digest",
        "PUT",
        f"/v2/{REPO}/manifests/{{manifest}}",
        201,
        body=MANIFEST,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "manifest put index",
        "PUT",
        f"/v2/{REPO}/manifests/list",
        201,
        body=INDEX,
        headers={"Content-Type": mt.DOCKER_MANIFEST_LIST},
    ),
    Call(
        "artifact put answers OCI-Subject",
        "PUT",
        f"/v2/{REPO}/manifests/{{artifact}}",
        201,
        body=ARTIFACT,
        headers={"Content-Type": mt.OCI_MANIFEST},
        want={"OCI-Subject": sha(MANIFEST)},
    ),
    Call(
        "manifest put digest mismatch",
        "PUT",
        f"/v2/{REPO}/manifests/{{layer}}",
        400,
        "DIGEST_INVALID",
        body=MANIFEST,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "manifest put missing blob",
        "PUT",
        f"/v2/{REPO}/manifests/bad",
        400,
        "MANIFEST_BLOB_UNKNOWN",
        body=MISSING_BLOB,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "manifest put blob of another repo",
        "PUT",
        "/v2/other/repo/manifests/bad",
        400,
        "MANIFEST_BLOB_UNKNOWN",
        body=MANIFEST,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "index put missing child",
        "PUT",
        f"/v2/{REPO}/manifests/bad",
        400,
        "MANIFEST_BLOB_UNKNOWN",
        body=INDEX_MISSING_CHILD,
        headers={"Content-Type": mt.OCI_INDEX},
    ),
    Call(
        "manifest put garbage",
        "PUT",
        f"/v2/{REPO}/manifests/bad",
        400,
        "MANIFEST_INVALID",
        body=b"{not json",
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "manifest put wrong content type",
        "PUT",
        f"/v2/{REPO}/manifests/bad",
        400,
        "MANIFEST_INVALID",
        body=MANIFEST,
        headers={"Content-Type": mt.OCI_INDEX},
    ),
    Call(
        "manifest put too large",
        "PUT",
        f"/v2/{REPO}/manifests/bad",
        413,
        "MANIFEST_INVALID",
        body=HUGE,
        headers={"Content-Type": mt.OCI_MANIFEST},
    ),
    Call(
        "manifest put bad tag",
        "PUT",
        f"/v2/{REPO}/manifests/-bad",
        400,
        "TAG_INVALID",
        body=MANIFEST,
    ),
    Call(
        "manifest put invalid tag name",
        "PUT",
        f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME",
        400,
        "TAG_INVALID",
        body=MANIFEST,
        headers={"Content-Type": mt.DOCKER_MANIFEST},
    ),
    Call(
        "manifest put read-only",
        "PUT",
        f"/v2/{REPO}/manifests/v2",
        405,
        "UNSUPPORTED",
        body=MANIFEST,
        options=Options(read_only=True),
    ),
    Call(
        "manifest put while gc holds the lock",
        "PUT",
        f"/v2/{REPO}/manifests/v2",
        503,
        "UNAVAILABLE",
        body=MANIFEST,
        options=Options(lock_timeout=0.2),
        lock_held=True,
        want={"Retry-After": "5"},
    ),
    Call("tag delete", "DELETE", f"/v2/{REPO}/manifests/sig", 202),
    Call("tag delete unknown", "DELETE", f"/v2/{REPO}/manifests/nope", 404, "MANIFEST_UNKNOWN"),
    Call("manifest delete", "DELETE", f"/v2/{REPO}/manifests/{{manifest}}", 202),
    Call(
        "manifest delete unknown",
        "DELETE",
        f"/v2/{REPO}/manifests/{{missing}}",
        404,
        "MANIFEST_UNKNOWN",
    ),
    Call(
        "manifest delete disabled",
        "DELETE",
        f"/v2/{REPO}/manifests/latest",
        405,
        "UNSUPPORTED",
        options=Options(delete_enabled=False),
    ),
    Call(
        "referrers",
        "GET",
        f"/v2/{REPO}/referrers/{{manifest}}",
        200,
        want={"Content-Type": mt.OCI_INDEX},
        json_body={
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": sha(ARTIFACT),
                    "size": len(ARTIFACT),
                    "artifactType": "application/vnd.example.sig",
                    "annotations": {"org.example": "yes"},
                }
            ],
        },
    ),
    Call(
        "referrers filtered out",
        "GET",
        f"/v2/{REPO}/referrers/{{manifest}}?artifactType=application/other",
        200,
        want={"OCI-Filters-Applied": "artifactType"},
        json_body={"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []},
    ),
    Call(
        "referrers of unknown digest",
        "GET",
        f"/v2/{REPO}/referrers/{{missing}}",
        200,
        json_body={"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []},
    ),
    Call("referrers bad digest", "GET", f"/v2/{REPO}/referrers/latest", 400, "DIGEST_INVALID"),
    Call(
        "method not allowed",
        "PATCH",
        f"/v2/{REPO}/manifests/latest",
        405,
        "UNSUPPORTED",
        want={"Allow": "DELETE, GET, HEAD, PUT"},
    ),
    Call("unknown path", "GET", "/v3/", 404, "NOT_FOUND"),
    Call("v1 ping", "GET", "/v1/_ping", 200, json_body=True),
    Call(
        "v1 search",
        "GET",
        "/v1/search?q=test",
        200,
        json_body={
            "num_results": 1,
            "query": "test",
            "results": [{"description": "", "name": "test/repo"}],
        },
    ),
    Call("v1 tags on a v2 storage", "GET", "/v1/repositories/test/repo/tags", 404, "NAME_UNKNOWN"),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_call(call: Call, tmp_path: Path) -> None:
    run_call(call, tmp_path)


def test_manifest_get_by_tag_sees_a_tag_moved_by_another_process(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed(root)
    with in_process(root) as served:
        assert request(served.host, "GET", f"/v2/{REPO}/manifests/sig")[1][
            "Docker-Content-Digest"
        ] == sha(ARTIFACT)
        V2Writer(FilesystemDriver(root)).untag(REPO, "sig")
        assert request(served.host, "GET", f"/v2/{REPO}/manifests/sig")[0] == 404


def test_empty_index_in_a_new_repository_is_visible_to_the_reference_and_its_gc(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    empty_index = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    ).encode()
    with in_process(root) as served:
        status = request(
            served.host,
            "PUT",
            "/v2/lonely/manifests/v1",
            empty_index,
            {"Content-Type": mt.OCI_INDEX},
        )[0]
        assert status == 201
    with reference_registry(root) as ref:
        assert http_json(f"{ref.url}/v2/_catalog")[1]["repositories"] == ["lonely"]
        eligible, output = run_reference_gc(ref.config, dry_run=True)
    assert eligible == set(), output
