"""Parse stored manifests: Docker schema2 and manifest list, OCI manifest and index, schema1.

Parsing dispatches on `mediaType` (then `schemaVersion`, then shape), as distribution's
manifest store does. Unknown or malformed content raises ManifestError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from regtool.model import mediatype as mt
from regtool.model.digest import DigestError, parse_digest
from regtool.model.jsondoc import JsonError, parse_json

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's maxManifestBodySize
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


class ManifestError(ValueError):
    """Bytes that are not a manifest we understand."""


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """Docker schema2 or OCI image manifest (including OCI 1.1 artifacts)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def references(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """Docker manifest list or OCI image index."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def references(self) -> tuple[Descriptor, ...]:
        return self.manifests


@dataclass(frozen=True, slots=True)
class Schema1Manifest:
    """Docker image manifest v2 schema 1 (read-only): layers top first, no sizes."""

    media_type: str
    fs_layers: tuple[str, ...]
    v1_history: tuple[str, ...]
    architecture: str | None
    subject: None = None

    def references(self) -> tuple[Descriptor, ...]:
        return tuple(Descriptor(mt.DOCKER_LAYER, d, -1) for d in self.fs_layers)


Manifest = ImageManifest | ImageIndex | Schema1Manifest


def parse_manifest(raw: bytes) -> Manifest:
    """Parse stored manifest bytes into one of the manifest types."""
    try:
        doc = parse_json(raw, limit=MAX_MANIFEST_BYTES)
    except JsonError as exc:
        raise ManifestError(f"manifest {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    media_type = doc.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise ManifestError(f"manifest mediaType is a {type(media_type).__name__}, not a string")
    version = doc.get("schemaVersion")
    if version == 1:
        return _schema1(doc)
    if version != 2:
        raise ManifestError(f"unsupported schemaVersion {version!r}")
    if media_type in mt.INDEX_TYPES or (media_type is None and "manifests" in doc):
        return _index(doc, media_type or mt.OCI_INDEX)
    if media_type in mt.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc):
        return _image(doc, media_type or mt.OCI_MANIFEST)
    raise ManifestError(f"unrecognized manifest media type {media_type!r}")


def _image(doc: dict[str, Any], media_type: str) -> ImageManifest:
    if "manifests" in doc:
        raise ManifestError("image manifest must not have 'manifests'")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("manifest 'layers' is missing or not a list")
    subject = doc.get("subject")
    return ImageManifest(
        media_type=media_type,
        config=parse_descriptor(doc.get("config")),
        layers=tuple(parse_descriptor(d) for d in layers),
        subject=parse_descriptor(subject) if subject is not None else None,
        artifact_type=_opt_str(doc.get("artifactType")),
    )


def _index(doc: dict[str, Any], media_type: str) -> ImageIndex:
    if "config" in doc or "layers" in doc:
        raise ManifestError("index must not have 'config' or 'layers'")
    children = doc.get("manifests")
    if not isinstance(children, list):
        raise ManifestError("index 'manifests' is missing or not a list")
    subject = doc.get("subject")
    return ImageIndex(
        media_type=media_type,
        manifests=tuple(parse_descriptor(d) for d in children),
        subject=parse_descriptor(subject) if subject is not None else None,
        artifact_type=_opt_str(doc.get("artifactType")),
    )


def _schema1(doc: dict[str, Any]) -> Schema1Manifest:
    fs_layers = doc.get("fsLayers")
    history = doc.get("history", [])
    if not isinstance(fs_layers, list) or not isinstance(history, list):
        raise ManifestError("schema1 manifest without fsLayers/history lists")
    try:
        sums = tuple(parse_digest(str(layer["blobSum"])) for layer in fs_layers)
        v1 = tuple(str(entry["v1Compatibility"]) for entry in history)
    except (KeyError, TypeError, DigestError) as exc:
        raise ManifestError(f"bad schema1 layer list: {exc}") from None
    signed = "signatures" in doc
    return Schema1Manifest(
        media_type=mt.DOCKER_SCHEMA1_SIGNED if signed else mt.DOCKER_SCHEMA1,
        fs_layers=sums,
        v1_history=v1,
        architecture=_opt_str(doc.get("architecture")),
    )


def parse_descriptor(doc: Any) -> Descriptor:
    if not isinstance(doc, dict):
        raise ManifestError("descriptor is not a JSON object")
    digest = doc.get("digest")
    size = doc.get("size")
    if type(digest) is not str or _SHA256.fullmatch(digest) is None:
        try:
            digest = parse_digest(str(doc["digest"]))
        except KeyError:
            raise ManifestError("descriptor without 'digest'") from None
        except DigestError as exc:
            raise ManifestError(f"descriptor digest: {exc}") from None
    if type(size) is not int or size < 0:
        raise ManifestError(f"descriptor size {size!r} is not a non-negative integer")
    platform = doc.get("platform")
    urls = doc.get("urls")
    artifact_type = doc.get("artifactType")
    return Descriptor(
        str(doc.get("mediaType", "")),
        digest,
        size,
        _platform(platform) if platform is not None and isinstance(platform, dict) else None,
        _opt_str(artifact_type) if artifact_type is not None else None,
        tuple(str(u) for u in urls) if urls and isinstance(urls, list) else (),
    )


def _platform(doc: dict[str, Any]) -> Platform:
    return Platform(
        os=str(doc.get("os", "")),
        architecture=str(doc.get("architecture", "")),
        variant=_opt_str(doc.get("variant")),
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
