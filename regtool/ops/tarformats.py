"""What an image tarball holds: its format, images, names, configs and layer members.

Formats, tried in this order:
  OCI layout    `oci-layout` + `index.json` + `blobs/` (Docker 25+ save, podman oci-archive)
  docker-archive `manifest.json` with Config/RepoTags/Layers (Docker 1.10+, podman save)
  legacy v1     `repositories` + `<id>/{json,layer.tar}` (Docker <= 1.9)
Reads only small members (JSON, capped by the archive); layers are streamed later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regtool.model import mediatype as mt
from regtool.model.digest import digest_of, is_digest
from regtool.model.reference import ReferenceError_, parse_reference
from regtool.ops.tararchive import (
    MAX_CONFIG,
    Archive,
    ArchiveError,
    member_json,
    named_digest,
)

OCI_LAYOUT = "oci-layout"
OCI_INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
V1_REPOSITORIES_FILE = "repositories"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
GZIP_TYPES = frozenset({mt.DOCKER_LAYER, mt.OCI_LAYER_GZIP})
RAW_TYPES = frozenset({mt.OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar"})


@dataclass
class Layer:
    member: str
    diff_id: str | None  # from the config (None: the config has no rootfs)
    blob: str | None  # digest the member's bytes must have (OCI descriptors, blob names)
    media_type: str | None  # OCI/docker media type when the archive says


@dataclass
class Image:
    label: str  # how errors name it
    names: list[tuple[str, str]]  # (repository, tag)
    config: bytes = b""
    layers: list[Layer] = field(default_factory=list)
    oci: bool = False
    original: bytes | None = None  # manifest bytes that may be kept when no layer changes
    children: list[Image] = field(default_factory=list)  # an index: its images
    platforms: list[dict[str, Any]] = field(default_factory=list)
    v1_jsons: list[bytes] = field(default_factory=list)  # legacy: image jsons, base first


def short_repository(name: str) -> str:
    """`docker.io/library/busybox` -> `busybox`, `localhost/app` -> `app`."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name.removeprefix("library/")


def parse_name(text: str) -> tuple[str, str] | None:
    """A name:tag from an archive, host dropped; None for digest-only or unparsable names."""
    try:
        ref = parse_reference(short_repository(text.split("@")[0]))
    except ReferenceError_:
        return None
    return ref.repository, ref.tag or "latest"


def find_images(archive: Archive) -> tuple[str, list[Image]]:
    if archive.has(OCI_LAYOUT) and archive.has(OCI_INDEX_FILE):
        return "oci", _oci_images(archive)
    if archive.has(DOCKER_MANIFEST_FILE):
        return "docker-archive", _docker_images(archive)
    if archive.has(V1_REPOSITORIES_FILE) or any(m.endswith("/layer.tar") for m in archive.members):
        return "v1", _v1_images(archive)
    raise ArchiveError("neither index.json, manifest.json nor repositories: not an image tarball")


def _docker_images(archive: Archive) -> list[Image]:
    entries = archive.json(DOCKER_MANIFEST_FILE)
    if not isinstance(entries, list):
        raise ArchiveError("manifest.json is not a list")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("manifest.json entry without Config")
        names = [n for n in map(parse_name, entry.get("RepoTags") or []) if n]
        label = f"{names[0][0]}:{names[0][1]}" if names else entry["Config"]
        image = Image(label, names)
        image.config = archive.read(entry["Config"], MAX_CONFIG)
        _check_name(entry["Config"], image.config)
        diff_ids = _diff_ids(image.config)
        members = entry.get("Layers") or []
        if diff_ids is not None and len(diff_ids) != len(members):
            raise ArchiveError(f"{len(members)} layers but the config lists {len(diff_ids)}")
        for position, member in enumerate(members):
            diff_id = diff_ids[position] if diff_ids else None
            image.layers.append(Layer(member, diff_id, _named_blob(member), None))
        images.append(image)
    return images


def _named_blob(member: str) -> str | None:
    """Only blobs/<alg>/<hex> names are content digests (podman's <hex>.tar is a diff_id)."""
    return named_digest(member) if "/blobs/" in f"/{member}" else None


def _check_name(member: str, data: bytes) -> None:
    claimed = named_digest(member)
    if claimed is not None and digest_of(data) != claimed:
        raise ArchiveError(f"member {member} has digest {digest_of(data)}")


def _diff_ids(config: bytes) -> list[str] | None:
    doc = member_json("image config", config)
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else None


def _blob_member(digest: Any) -> str:
    if not isinstance(digest, str) or not is_digest(digest):
        raise ArchiveError(f"descriptor with a bad digest: {str(digest)[:80]!r}")
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _oci_images(archive: Archive) -> list[Image]:
    index = archive.json(OCI_INDEX_FILE)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise ArchiveError("index.json has no manifests")
    images = []
    for desc in manifests:
        annotations = desc.get("annotations") or {}
        text = annotations.get(CONTAINERD_NAME) or annotations.get(OCI_REF_NAME) or ""
        name = parse_name(text) if ("/" in text or ":" in text) else None
        names = [name] if name else []
        if not name and text:
            names = [("", text)]  # a bare tag: the repository comes from --tag
        image = _oci_manifest(archive, desc, names)
        if image is not None:
            images.append(image)
    return images


def _oci_manifest(archive: Archive, desc: dict[str, Any], names: list) -> Image | None:
    digest = desc.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ArchiveError(f"index.json descriptor with a bad digest: {digest!r}")
    member = _blob_member(digest)
    label = f"{names[0][0]}:{names[0][1]}" if names else digest
    if not archive.has(member):
        return None  # another platform of an index, not in this archive
    raw = archive.read(member)
    _check_name(member, raw)
    doc = member_json(member, raw, dict)
    media = doc.get("mediaType") or desc.get("mediaType")
    if media in mt.INDEX_TYPES:
        image = Image(label, names, oci=media == mt.OCI_INDEX, original=raw)
        for child in doc.get("manifests") or []:
            found = _oci_manifest(archive, child, [])
            if found is not None:
                image.children.append(found)
                image.platforms.append(child.get("platform") or {})
        if not image.children:
            raise ArchiveError(f"index {digest} has none of its images in the archive")
        if len(image.children) < len(doc.get("manifests") or []):
            # a single-platform save of a multi-platform image (Docker 25+): the index
            # names manifests the archive lacks, so it cannot be stored as it is
            if len(image.children) == 1:
                child = image.children[0]
                child.label, child.names = label, names
                return child
            image.original = None
        return image
    if media not in mt.IMAGE_MANIFEST_TYPES:
        raise ArchiveError(f"manifest {digest} has unsupported media type {media}")
    image = Image(label, names, oci=media == mt.OCI_MANIFEST, original=raw)
    config = doc.get("config") or {}
    image.config = archive.read(_blob_member(config.get("digest")), MAX_CONFIG)
    _check_name(_blob_member(config["digest"]), image.config)
    diff_ids = _diff_ids(image.config) or []
    layers = doc.get("layers") or []
    if len(diff_ids) != len(layers):
        raise ArchiveError(f"manifest {digest}: {len(layers)} layers, config has {len(diff_ids)}")
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        image.layers.append(
            Layer(_blob_member(layer["digest"]), diff_id, layer["digest"], layer.get("mediaType"))
        )
    return image


def _v1_images(archive: Archive) -> list[Image]:
    tops: list[tuple[str, list[tuple[str, str]]]] = []
    if archive.has(V1_REPOSITORIES_FILE):
        repos = archive.json(V1_REPOSITORIES_FILE)
        by_id: dict[str, list[tuple[str, str]]] = {}
        for repo, tags in (repos or {}).items():
            for tag, image_id in (tags or {}).items():
                name = parse_name(f"{repo}:{tag}")
                if name:
                    by_id.setdefault(image_id, []).append(name)
        tops = list(by_id.items())
    if not tops:  # unnamed: the images nobody names as parent
        ids = {m.split("/")[0] for m in archive.members if m.endswith("/json")}
        parents = {_v1_parent(archive, f"{i}/json") for i in ids}
        tops = [(i, []) for i in sorted(ids - parents)]
    images = []
    for top, names in tops:
        label = f"{names[0][0]}:{names[0][1]}" if names else top
        image = Image(label, names)
        chain: list[str] = []
        current: str | None = top
        while current:
            if current in chain or len(chain) > 1000:
                raise ArchiveError(f"image {top[:12]}: parent loop")
            chain.append(current)
            raw = archive.read(f"{current}/json")
            image.v1_jsons.insert(0, raw)
            current = _v1_parent(archive, f"{current}/json", raw)
        image.layers = [Layer(f"{i}/layer.tar", None, None, None) for i in reversed(chain)]
        images.append(image)
    return images


def _v1_parent(archive: Archive, member: str, raw: bytes | None = None) -> str | None:
    """The `parent` a v1 image json names, None for a base image."""
    doc = member_json(member, archive.read(member) if raw is None else raw, dict)
    parent = doc.get("parent")
    return parent if isinstance(parent, str) and parent else None
