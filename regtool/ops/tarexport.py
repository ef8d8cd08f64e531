"""Export images from the v2 storage as one tarball that `docker load` and `podman load` take.

The tar is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) that also
carries a docker-archive `manifest.json` whose Config and Layers point into `blobs/`, so
loaders of either kind read it. Blobs are streamed from storage into the tar (written to
`FILE.tmp`, renamed at the end), each blob once however many images share it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from regtool.errors import OperationalError, UnreadableError, UsageError
from regtool.layout.reader import RegistryReader
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.reader import V2Reader
from regtool.model import mediatype as mt
from regtool.model.digest import digest_of
from regtool.model.manifest import (
    MAX_MANIFEST_BYTES,
    ImageIndex,
    ImageManifest,
    ManifestError,
    parse_manifest,
)
from regtool.ops.inventory import short_name
from regtool.ops.resolve import resolve_reference
from regtool.storage import meter
from regtool.storage.driver import StorageError

DEFAULT_PLATFORM = "linux/amd64"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
MTIME = 0  # fixed member times: the same images give the same tar


@dataclass(frozen=True, slots=True)
class ExportedImage:
    reference: str  # name:tag written into the tar
    manifest: str
    platform: str | None
    layers: int
    size: int


@dataclass(frozen=True, slots=True)
class ExportResult:
    file: str
    images: tuple[ExportedImage, ...]
    blobs: int
    bytes: int


def _platform_of(desc_platform: object) -> str | None:
    return str(desc_platform) if desc_platform is not None else None


def export_images(
    reader: RegistryReader,
    refs: Sequence[str],
    output: Path,
    *,
    platform: str | None = None,
    stream: BinaryIO | None = None,
) -> ExportResult:
    """Write the images `refs` name into a tarball at `output` (or, with `stream`, into
    that stream, written front to back: a pipe will do)."""
    if not isinstance(reader, V2Reader):
        raise UsageError("export reads a v2 storage", hint="run `regtool migrate` first")
    chosen = []
    for ref in refs:
        target = resolve_reference(reader, ref)
        raw = _blob(reader, target.digest)
        manifest, raw, picked = _single_image(reader, target.label, raw, platform)
        name = f"{short_name(target.repository)}:{target.tag or 'latest'}"
        chosen.append((name, raw, manifest, picked))
    written: set[str] = set()
    total = 0
    images: list[ExportedImage] = []
    meter.phase("writing", _bytes(chosen))
    if stream is not None:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            total = _write_tar(tar, reader, chosen, written, images)
        stream.flush()
        return ExportResult("-", tuple(images), len(written), total)
    tmp = output.with_name(output.name + ".tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            total = _write_tar(tar, reader, chosen, written, images)
        os.replace(tmp, output)
    except OSError as exc:  # the file asked for, never its temporary name
        tmp.unlink(missing_ok=True)
        raise OperationalError(f"cannot write {output}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(str(output), tuple(images), len(written), total)


def _write_tar(
    tar: tarfile.TarFile,
    reader: V2Reader,
    chosen: list[tuple[str, bytes, ImageManifest, str | None]],
    written: set[str],
    images: list[ExportedImage],
) -> int:
    """The layout, blobs once each, then index.json and manifest.json; returns the bytes."""
    total = 0
    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index, docker = [], []
    for name, raw, manifest, picked in chosen:
        digest = digest_of(raw)
        for blob in (manifest.config, *manifest.layers):
            if blob.digest not in written:
                total += _add_blob(tar, reader, blob.digest)
                written.add(blob.digest)
        if digest not in written:
            _add_bytes(tar, _member(digest), raw)
            meter.data(len(raw))
            written.add(digest)
            total += len(raw)
        index.append(
            {
                "mediaType": manifest.media_type,
                "digest": digest,
                "size": len(raw),
                "annotations": {
                    CONTAINERD_NAME: name,
                    OCI_REF_NAME: name.rsplit(":", 1)[1],
                },
            }
        )
        docker.append(
            {
                "Config": _member(manifest.config.digest),
                "RepoTags": [name],
                "Layers": [_member(layer.digest) for layer in manifest.layers],
            }
        )
        size = manifest.config.size + sum(layer.size for layer in manifest.layers)
        images.append(ExportedImage(name, digest, picked, len(manifest.layers), size))
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index}
    _add_bytes(tar, "index.json", json.dumps(doc, separators=(",", ":")).encode())
    _add_bytes(tar, "manifest.json", json.dumps(docker, separators=(",", ":")).encode())
    return total


def _single_image(
    reader: V2Reader, label: str, raw: bytes, platform: str | None
) -> tuple[ImageManifest, bytes, str | None]:
    """The image manifest to export; an index contributes the child for `platform`."""
    manifest = _parse(label, raw)
    if isinstance(manifest, ImageIndex):
        children = [d for d in manifest.manifests if mt.is_manifest(d.media_type)]
        wanted = platform or DEFAULT_PLATFORM
        match = [d for d in children if _platform_of(d.platform) == wanted]
        if not match and platform is None and len(children) == 1:
            match = children
        if not match:
            offered = ", ".join(sorted({str(d.platform) for d in children if d.platform}))
            raise UsageError(f"{label} has no {wanted} image", hint=f"--platform {offered}")
        raw = _blob(reader, match[0].digest)
        child = _parse(label, raw)
        if not isinstance(child, ImageManifest):
            raise UsageError(f"{label}: nested indexes are not exported")
        return child, raw, _platform_of(match[0].platform)
    if not isinstance(manifest, ImageManifest):
        raise UsageError(f"{label} is a schema1 manifest; loaders no longer accept those")
    return manifest, raw, None


def _parse(label: str, raw: bytes) -> ImageManifest | ImageIndex | object:
    try:
        return parse_manifest(raw)
    except ManifestError as exc:
        raise UnreadableError(f"{label}: unreadable manifest: {exc}") from None


def _blob(reader: V2Reader, digest: str) -> bytes:
    """A manifest's bytes (a link may name any blob: nothing over the manifest limit)."""
    try:
        return reader.driver.get(v2paths.blob_data(digest), MAX_MANIFEST_BYTES)
    except StorageError as exc:
        raise UnreadableError(f"blob {digest}: {exc.message}") from None


def _member(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = MTIME
    info.mode = 0o644
    return info


def _bytes(chosen: list[tuple[str, bytes, ImageManifest, str | None]]) -> int:
    """What the blobs and manifests of the chosen images hold, each once."""
    sizes: dict[str, int] = {}
    for _, raw, manifest, _ in chosen:
        for blob in (manifest.config, *manifest.layers):
            sizes[blob.digest] = blob.size
        sizes[digest_of(raw)] = len(raw)
    return sum(sizes.values())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, reader: V2Reader, digest: str) -> int:
    path = v2paths.blob_data(digest)
    try:
        size = reader.driver.stat(path).size
        with reader.driver.open(path) as handle:
            tar.addfile(_info(_member(digest), size), meter.counted(handle))
    except StorageError as exc:
        raise UnreadableError(f"blob {digest}: {exc.message}") from None
    return size
