"""The API table's storage, calls and runner (in the manner of go-containerregistry's TestCalls).

Each call runs against a fresh storage holding `test/repo:latest` (a schema2 image), an
OCI artifact `test/repo:sig` whose subject is that image, and `other/repo` with one layer.
Every call that answers an error must leave the storage exactly as it was.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.server.handlers.context import Options
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.lock import storage_lock
from tests.server.conftest import in_process

REPO = "test/repo"
LAYER = b"layer-bytes-0123456789"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
EMPTY = b"{}"
OTHER_LAYER = b"a layer only other/repo has"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data)}


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(mt.DOCKER_CONFIG, CONFIG),
        "layers": [desc(mt.DOCKER_LAYER, LAYER)],
    },
    indent=3,
).encode()
ARTIFACT = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": desc(mt.OCI_EMPTY, EMPTY),
        "layers": [desc(mt.OCI_EMPTY, EMPTY)],
        "subject": desc(mt.DOCKER_MANIFEST, MANIFEST),
        "annotations": {"org.example": "yes"},
    }
).encode()
MISSING_BLOB = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(mt.DOCKER_CONFIG, CONFIG),
        "layers": [desc(mt.DOCKER_LAYER, b"never uploaded")],
    }
).encode()
INDEX_MISSING_CHILD = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [desc(mt.OCI_MANIFEST, b"no such manifest")],
    }
).encode()
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            desc(mt.DOCKER_MANIFEST, MANIFEST)
            | {"platform": {"os": "linux", "architecture": "amd64"}}
        ],
    }
).encode()


def image(
    layers: list[dict[str, object]],
    config: dict[str, object] | None = None,
    media_type: str = mt.DOCKER_MANIFEST,
) -> bytes:
    """An image manifest of `media_type` with these layer descriptors (default config)."""
    oci = media_type == mt.OCI_MANIFEST
    default = desc(mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, CONFIG)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config or default,
            "layers": layers,
        }
    ).encode()


def index(children: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": children}
    ).encode()


HUGE = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
NAMES = {
    "layer": sha(LAYER),
    "config": sha(CONFIG),
    "manifest": sha(MANIFEST),
    "artifact": sha(ARTIFACT),
    "other": sha(OTHER_LAYER),
    "missing": sha(b"nope"),
    "long": "a" * 256,
}
DOCKER_ACCEPT = {"Accept": f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}"}


def seed(root: Path) -> None:
    writer = V2Writer(FilesystemDriver(root, fsync=False))
    for blob in (LAYER, CONFIG, EMPTY):
        writer.put_blob(REPO, blob)
    writer.put_manifest(REPO, MANIFEST, "latest")
    writer.put_manifest(REPO, ARTIFACT, "sig")
    writer.put_blob("other/repo", OTHER_LAYER)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
        if p.name != ".regtool.lock"
    }


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    status: int
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    want: dict[str, str | None] = field(default_factory=dict)  # None: header must be present
    before: tuple[tuple[str, str, bytes], ...] = ()  # (method, path, body); {upload} = last POST
    options: Options = field(default_factory=Options)
    changes_on_error: bool = False
    json_body: object = None
    lock_held: bool = False  # another process (gc, rm) holds the storage lock exclusively


UPLOAD = ("POST", f"/v2/{REPO}/blobs/uploads/", b"")


def fill(text: str, upload: str = "") -> str:
    return text.format(upload=upload, **NAMES)


def request(
    host: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def run_call(call: Call, tmp_path: Path) -> None:
    """Seed a fresh storage, make the call's `before` requests, then the call; check it."""
    root = tmp_path / "root"
    seed(root)
    with in_process(root, call.options) as served:
        upload = ""
        for method, path, body in call.before:
            status, headers, _ = request(served.host, method, fill(path, upload), body)
            assert status < 300, (method, path, status)
            upload = headers.get("Location", upload)
        before = snapshot(root)
        with ExitStack() as stack:
            if call.lock_held:
                stack.enter_context(storage_lock(root, exclusive=True))
            status, headers, body = request(
                served.host, call.method, fill(call.path, upload), call.body, call.headers
            )
    assert status == call.status, body
    if call.code is not None:
        assert json.loads(body)["errors"][0]["code"] == call.code
        if not call.changes_on_error:
            assert snapshot(root) == before, "an error answer changed the storage"
    for name, value in call.want.items():
        assert name in headers, f"{name} missing from {headers}"
        if value is not None:
            assert headers[name] == value
    if call.json_body is not None:
        assert json.loads(body) == call.json_body
    if call.method == "HEAD":
        assert body == b""
