"""Helpers for migrate/import tests: small v1 trees, tree snapshots, pulls with skopeo."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.serve import subprocess_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V1_FIXTURE = FIXTURES / "v1"
V2_FIXTURE = FIXTURES / "v2"


def make_tar(files: dict[str, bytes], mtime: int = 1_400_000_000) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def compress(tar: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(tar, mtime=0)
    if kind == "xz":
        return lzma.compress(tar)
    if kind == "bzip2":
        return bz2.compress(tar)
    return tar


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def write_image(
    root: Path,
    ident: str,
    parent: str | None,
    layer: bytes | None,
    *,
    cmd: str = "true",
    minimal: bool = False,
    docker_version: str = "1.8.2",
) -> None:
    folder = root / "images" / ident
    folder.mkdir(parents=True)
    if minimal:
        doc: dict[str, object] = {"id": ident}
        if parent:
            doc["parent"] = parent
    else:
        doc = {"id": ident}
        if parent:
            doc["parent"] = parent
        doc.update(
            {
                "created": "2015-01-02T03:04:05.123456789Z",
                "container_config": {"Cmd": ["/bin/sh", "-c", cmd]},
                "docker_version": docker_version,
                "architecture": "amd64",
                "os": "linux",
                "Size": 10,
            }
        )
    (folder / "json").write_bytes(json.dumps(doc, separators=(",", ":")).encode())
    ancestry = [ident]
    if parent:
        parent_ancestry = root / "images" / parent / "ancestry"
        ancestry += (
            json.loads(parent_ancestry.read_text()) if parent_ancestry.exists() else [parent]
        )
    (folder / "ancestry").write_text(json.dumps(ancestry))
    if layer is not None:
        (folder / "layer").write_bytes(layer)


def write_tag(root: Path, repository: str, tag: str, ident: str) -> None:
    folder = root / "repositories" / repository
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"tag_{tag}").write_text(ident)


def snapshot(root: Path) -> dict[str, tuple[str, float]]:
    """Every file below root: sha256 of content and mtime (the lock file left out)."""
    found = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name == ".regtool.lock":
                continue
            path = Path(folder) / name
            found[str(path.relative_to(root))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_mtime,
            )
    return found


def skopeo_pull(host: str, ref: str, dest: Path) -> dict:
    """Copy host/ref into a `dir:` folder (layers kept as pulled); returns its manifest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--preserve-digests",
            f"docker://{host}/{ref}",
            f"dir:{dest}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return json.loads((dest / "manifest.json").read_text())


def layer_tars(pulled: Path, manifest: dict) -> list[str]:
    """sha256 of each pulled layer's uncompressed tar, base first."""
    result = []
    for layer in manifest["layers"]:
        blob = (pulled / layer["digest"].split(":")[1]).read_bytes()
        result.append(sha(gzip.decompress(blob)))
    return result


def uncompressed_digest(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        return sha(gzip.decompress(data))
    if data[:6] == b"\xfd7zXZ\x00":
        return sha(lzma.decompress(data))
    if data[:3] == b"BZh":
        return sha(bz2.decompress(data))
    return sha(data)


@contextmanager
def regtool_serve(root: Path) -> Iterator[str]:
    """`regtool serve --root ROOT` on a free loopback port; yields HOST:PORT."""
    with subprocess_server(root) as served:
        yield served.host


def regtool_verify(root: Path) -> dict:
    """`regtool verify --format json` on root; returns the report (exit code asserted 0)."""
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "verify", "--root", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)
