"""Small OCI image layouts (tar or folder) made of gzip layers, for import tests."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

from regtool.model.v1convert import BlobRef, build_manifest
from tests.support.v1tree import compress, make_tar, sha, uncompressed_digest


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def gzip_layer(name: str, size: int = 200_000) -> bytes:
    return compress(make_tar({name: random.Random(name).randbytes(size)}), "gzip")


def oci_image(layers: list[bytes]) -> tuple[bytes, bytes]:
    """Config and OCI manifest of an image made of these gzip layers."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [uncompressed_digest(x) for x in layers]},
        }
    ).encode()
    return config, build_manifest(config, [BlobRef(sha(x), len(x)) for x in layers], oci=True)


def oci_index(manifest: bytes, annotations: dict[str, str]) -> bytes:
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest),
        "size": len(manifest),
        "annotations": annotations,
    }
    return json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()


def oci_tar_of(path: Path, name: str, layers: list[bytes], damaged: bytes | None = None) -> None:
    """An OCI layout tar of one image; the `damaged` layer's bytes get one byte changed."""
    config, manifest = oci_image(layers)
    with tarfile.open(path, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", oci_index(manifest, {"io.containerd.image.name": name}))
        for blob in (config, manifest, *layers):
            data = blob[:-9] + bytes([blob[-9] ^ 1]) + blob[-8:] if blob == damaged else blob
            add(tar, f"blobs/sha256/{sha(blob)[7:]}", data)


def oci_dir_of(path: Path, tag: str, layers: list[bytes]) -> None:
    """The same image as an OCI layout folder, for `skopeo copy oci:PATH:TAG`."""
    config, manifest = oci_image(layers)
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = oci_index(manifest, {"org.opencontainers.image.ref.name": tag})
    (path / "index.json").write_bytes(index)
    for blob in (config, manifest, *layers):
        (path / "blobs" / "sha256" / sha(blob)[7:]).write_bytes(blob)


def index_of_indexes(child_digest: str, child_size: int) -> bytes:
    """An OCI index whose one entry is another index (nesting the reference never writes)."""
    child = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": child_digest,
        "size": child_size,
    }
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child],
        }
    ).encode()
