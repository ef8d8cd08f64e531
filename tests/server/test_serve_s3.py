"""`regtool serve --config s3.yml` on a real Ceph RGW bucket: real clients, two instances
on one bucket, the reference registry (2.8.2) on the same bucket as the oracle."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout.v2 import paths
from regtool.server.app import App, open_context
from regtool.server.handlers.context import Options
from regtool.server.stdlib import RegistryServer
from tests.server.conftest import FIXTURE_V2, INSECURE, copy_fixture, skopeo, subprocess_server
from tests.support.ocitar import gzip_layer, oci_dir_of
from tests.support.refregistry import reference_registry
from tests.support.relay import Relay
from tests.support.rgw import new_bucket, s3_client, s3load

PREFIX = "/registry"
EXPECTED = json.loads((FIXTURE_V2 / "EXPECTED.json").read_text())
MiB = 1 << 20
REPO = "shared/blob"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_config(rgw: Any, bucket: str, path: Path, *, redirect: bool = True) -> Path:
    config = s3load.write_config(rgw, bucket, PREFIX, path)
    if not redirect:
        doc = yaml.safe_load(config.read_text())
        doc["storage"]["redirect"] = {"disable": True}
        config.write_text(yaml.safe_dump(doc))
    return config


def s3_keys(config: Path) -> dict[str, object]:
    return yaml.safe_load(config.read_text())["storage"]["s3"]


def request(
    host: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
        return r.status, r.read()


def raw_digest(host: str, ref: str) -> str:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host}/{ref}")
    return sha(raw.encode())


def pulled_whole(host: str, ref: str, folder: Path) -> str:
    """skopeo copy to dir:; every file named by a digest holds exactly those bytes;
    returns the manifest's digest."""
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/{ref}", f"dir:{folder}")
    for item in folder.iterdir():
        if len(item.name) == 64:
            assert hashlib.sha256(item.read_bytes()).hexdigest() == item.name
    return sha((folder / "manifest.json").read_bytes())


@pytest.fixture(scope="module")
def bucket(rgw: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One empty bucket, with a config that redirects blob GETs and one that does not."""
    name = new_bucket(s3_client(rgw))
    work = tmp_path_factory.mktemp("s3serve")
    return {
        "redirect": write_config(rgw, name, work / "redirect.yml"),
        "stream": write_config(rgw, name, work / "stream.yml", redirect=False),
    }


@pytest.fixture(scope="module")
def instances(bucket: dict[str, Path]) -> Iterator[tuple[Any, Any, Any]]:
    """A and B stream blobs, C redirects; all three serve the one bucket."""
    config = bucket["stream"]
    with (
        subprocess_server(None, config=config, log=config.parent / "a.log") as a,
        subprocess_server(None, config=config, log=config.parent / "b.log") as b,
        subprocess_server(None, config=bucket["redirect"], log=config.parent / "c.log") as c,
    ):
        yield a, b, c


def test_skopeo_push_to_serve_on_a_bucket_is_pulled_whole_by_the_reference(
    bucket: dict[str, Path], instances: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    a, _b, _c = instances
    source = copy_fixture(FIXTURE_V2, tmp_path / "source")
    with reference_registry(source) as ref:
        for tag in ("centos:httpd", "multi:latest"):
            skopeo(
                "copy", "--all", *INSECURE, f"docker://{ref.host}/{tag}", f"docker://{a.host}/{tag}"
            )
    with reference_registry(tmp_path / "unused", s3=s3_keys(bucket["stream"])) as on_bucket:
        for tag in ("centos:httpd", "multi:latest"):
            assert raw_digest(on_bucket.host, tag) == EXPECTED["manifests"][tag]["digest"]
        digest = pulled_whole(on_bucket.host, "centos:httpd", tmp_path / "pulled")
        assert digest == EXPECTED["manifests"]["centos:httpd"]["digest"]


def test_what_the_reference_writes_to_the_bucket_serve_serves_whole(
    rgw: Any, instances: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    other = write_config(rgw, new_bucket(s3_client(rgw)), tmp_path / "other.yml")
    image = tmp_path / "oci"
    oci_dir_of(image, "v1", [gzip_layer("one", 300_000), gzip_layer("two", 50_000)])
    with reference_registry(tmp_path / "unused", s3=s3_keys(other)) as on_bucket:
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{image}:v1",
            f"docker://{on_bucket.host}/app:v1",
        )
        expected = raw_digest(on_bucket.host, "app:v1")
    for args in ((), ("--read-only",)):
        with subprocess_server(None, *args, config=other, log=tmp_path / "serve.log") as served:
            assert raw_digest(served.host, "app:v1") == expected
            assert pulled_whole(served.host, "app:v1", tmp_path / f"pulled{len(args)}") == expected


def start(host: str) -> str:
    status, headers, body = request(host, "POST", f"/v2/{REPO}/blobs/uploads/")
    assert status == 202, body
    return headers["Location"]


def patch(host: str, location: str, data: bytes, first: int) -> tuple[int, dict[str, str]]:
    status, headers, _ = request(
        host,
        "PATCH",
        location,
        data,
        {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{first}-{first + len(data) - 1}",
        },
    )
    return status, headers


def test_an_upload_moves_between_instances_and_the_blob_is_read_from_each(
    bucket: dict[str, Path], instances: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    a, b, c = instances
    one, two = os.urandom(6 * MiB), os.urandom(6 * MiB + 123)  # two chunks, beyond a part
    data = one + two
    digest = sha(data)
    location = start(a.host)
    assert patch(b.host, location, one, 0)[0] == 202
    status, headers, _ = request(a.host, "GET", location)
    assert (status, headers["Range"]) == (204, f"0-{len(one) - 1}")
    status, headers = patch(b.host, location, b"again", 0)  # not where the data ends
    assert (status, headers["Range"]) == (416, f"0-{len(one) - 1}")
    assert patch(a.host, location, two, len(one))[0] == 202
    status, headers, body = request(b.host, "PUT", f"{location}?digest={digest}")
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == digest
    blob = f"/v2/{REPO}/blobs/{digest}"
    for server in (a, b):
        assert request(server.host, "GET", blob)[2] == data
        status, headers, body = request(
            server.host, "GET", blob, headers={"Range": "bytes=5-1000004"}
        )
        assert (status, body) == (206, data[5:1000005])
        assert headers["Content-Range"] == f"bytes 5-1000004/{len(data)}"
    status, headers, _ = request(c.host, "GET", blob)
    assert status == 307
    assert fetch(headers["Location"]) == (200, data)
    assert fetch(headers["Location"], {"Range": "bytes=7-9"}) == (206, data[7:10])
    status, _, _ = request(c.host, "HEAD", blob)
    assert status == 200
    with reference_registry(tmp_path, s3=s3_keys(bucket["stream"])) as ref:
        assert fetch(f"{ref.url}{blob}") == (200, data)
        assert fetch(f"{ref.url}{blob}", {"Range": "bytes=3-5"}) == (206, data[3:6])
    assert request(a.host, "GET", location)[0] == 404  # the session is gone


def test_a_wrong_digest_at_put_stores_and_links_nothing(
    bucket: dict[str, Path], instances: tuple[Any, Any, Any]
) -> None:
    a, b, _c = instances
    for chunks in ([os.urandom(1000)], [os.urandom(1000), os.urandom(2000)]):
        data = b"".join(chunks)
        location = start(a.host)
        offset = 0
        for i, chunk in enumerate(chunks):
            assert patch((b, a)[i % 2].host, location, chunk, offset)[0] == 202
            offset += len(chunk)
        wrong = sha(data + b"!")
        status, _, body = request(b.host, "PUT", f"{location}?digest={wrong}")
        assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        for digest in (wrong, sha(data)):
            assert request(a.host, "HEAD", f"/v2/{REPO}/blobs/{digest}")[0] == 404
            assert not stored(bucket["stream"], paths.blob_data(digest))
        assert request(a.host, "GET", location)[0] == 404


def stored(config: Path, key: str) -> bool:
    keys = s3_keys(config)
    client = s3_client(
        type(
            "C",
            (),
            {
                "endpoint": keys["regionendpoint"],
                "region": "us-east-1",
                "access_key": keys["accesskey"],
                "secret_key": keys["secretkey"],
            },
        )
    )
    found = client.list_objects_v2(Bucket=keys["bucket"], Prefix=f"{PREFIX.strip('/')}/{key}")
    return found.get("KeyCount", 0) > 0


def test_two_instances_writing_one_offset_keep_one_chunk(instances: tuple[Any, Any, Any]) -> None:
    """The chunk key is written create-only: the late writer is refused, never overwrites."""
    a, b, _c = instances
    location = start(a.host)
    late, early = os.urandom(2 * MiB), os.urandom(1000)
    host, port = a.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Range: 0-{len(late) - 1}\r\nContent-Length: {len(late)}\r\n\r\n"
            ).encode()
            + late[:MiB]
        )
        assert patch(b.host, location, early, 0)[0] == 202
        sock.sendall(late[MiB:])
        answer = sock.recv(65536).decode("latin-1")
    assert answer.split(" ")[1] in ("409", "416"), answer
    status, headers, _ = request(b.host, "GET", location)
    assert (status, headers["Range"]) == (204, f"0-{len(early) - 1}")
    assert request(a.host, "PUT", f"{location}?digest={sha(early)}")[0] == 201


def test_redirect_disabled_streams_and_enabled_redirects_to_the_bytes(
    instances: tuple[Any, Any, Any],
) -> None:
    a, _b, c = instances
    data = os.urandom(9 * MiB)
    digest = sha(data)
    status, _, body = request(a.host, "POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", data)
    assert status == 201, body
    blob = f"/v2/{REPO}/blobs/{digest}"
    status, headers, body = request(a.host, "GET", blob)
    assert (status, body) == (200, data)
    status, headers, body = request(c.host, "GET", blob)
    assert status == 307 and body == b""
    assert headers["Location"].startswith("http://127.0.0.1:")
    assert fetch(headers["Location"]) == (200, data)


@contextmanager
def in_process(config: Path) -> Iterator[str]:
    server = RegistryServer(("127.0.0.1", 0), App(open_context(None, Options(), config)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_endpoint_answers_500_never_404(
    rgw: Any,
    bucket: dict[str, Path],
    instances: tuple[Any, Any, Any],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    relay = Relay(rgw.endpoint)
    doc = yaml.safe_load(bucket["stream"].read_text())
    doc["storage"]["s3"]["regionendpoint"] = f"http://127.0.0.1:{relay.port}"
    config = tmp_path / "relayed.yml"
    config.write_text(yaml.safe_dump(doc))
    digest = EXPECTED["manifests"]["centos:httpd"]["digest"]
    with in_process(config) as host:
        assert request(host, "GET", f"/v2/centos/manifests/{digest}")[0] == 200
        relay.cut()
        for method, path in [
            ("GET", f"/v2/centos/manifests/{digest}"),
            ("GET", "/v2/centos/manifests/httpd"),
            ("HEAD", f"/v2/centos/blobs/{digest}"),
            ("GET", "/v2/centos/tags/list"),
            ("POST", "/v2/centos/blobs/uploads/"),
        ]:
            status, _, body = request(host, method, path)
            assert status == 500, (method, path, body)
    assert "storage error" in capfd.readouterr().err


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_after_serving_verify_finds_no_error_and_gc_plans_nothing_live(
    bucket: dict[str, Path], instances: tuple[Any, Any, Any]
) -> None:
    config = str(bucket["stream"])
    code, out = regtool("verify", "--config", config, "-f", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["checked"]["blobs"] > 0 and report["checked"]["tags"] >= 2
    assert [p for p in report["problems"] if p["severity"] == "error"] == []
    code, out = regtool("gc", "--dry-run", "--grace", "0", "--config", config, "-f", "json")
    assert code == 0, out
    planned = json.loads(out)["delete"]
    # only what was pushed without a manifest (REPO's blobs and links) goes
    assert {e["kind"] for e in planned} <= {"blob", "link", "repository"}
    assert all(e["id"].startswith(REPO) for e in planned if e["kind"] != "blob"), planned
    pushed = json.dumps([EXPECTED["manifests"][t] for t in ("centos:httpd", "multi:latest")])
    live = set(re.findall(r"sha256:[0-9a-f]{64}", pushed))
    assert live and not live & {e["id"] for e in planned}


def test_tls_auto_on_a_bucket_keeps_its_ca_beside_the_config(
    bucket: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "tls.yml"
    config.write_text(bucket["stream"].read_text())
    with subprocess_server(None, "--tls", "auto", config=config) as served:
        assert served.url.startswith("https://")
    assert (tmp_path / "tls-tls").is_dir() and any((tmp_path / "tls-tls").iterdir())
