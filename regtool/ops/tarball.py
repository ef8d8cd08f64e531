"""Import image tarballs (docker save of every generation, podman save, OCI layout tars)
straight into the v2 layout.

Formats, tried in this order:
  OCI layout    `oci-layout` + `index.json` + `blobs/` (Docker 25+ save, podman oci-archive)
  docker-archive `manifest.json` with Config/RepoTags/Layers (Docker 1.10+, podman save)
  legacy v1     `repositories` + `<id>/{json,layer.tar}` (Docker <= 1.9), converted exactly
                as `migrate` converts a v1 chain.
Layers held raw in the tar are gzip-compressed on the way in (deterministic, so re-imports
give the same digests); every layer's uncompressed digest is checked against the config and
every blob against its name. Phase 1 writes the blobs of every image; only if all of them
are good does phase 2 write links, manifests and tags. A failure in phase 1 removes the blobs
it created, so the destination is left as it was.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regtool.errors import UnreadableError, UsageError
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.model.digest import digest_of, is_digest
from regtool.model.reference import ReferenceError_, parse_reference
from regtool.model.v1convert import BlobRef, V1ConvertError, build_manifest, config_from_v1
from regtool.ops import layerio
from regtool.ops.migrate import SharedLock, flush, open_destination
from regtool.ops.tararchive import Archive, ArchiveError, named_digest
from regtool.storage.driver import PathNotFound

OCI_LAYOUT = "oci-layout"
OCI_INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
V1_REPOSITORIES_FILE = "repositories"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
GZIP_TYPES = frozenset({mt.DOCKER_LAYER, mt.OCI_LAYER_GZIP})
RAW_TYPES = frozenset({mt.OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar"})


@dataclass(frozen=True, slots=True)
class ImportedImage:
    repository: str
    tag: str | None
    manifest: str
    layers: int
    size: int  # config + layer blob bytes
    status: str  # written | present


@dataclass(frozen=True, slots=True)
class ImportResult:
    file: str
    format: str  # oci | docker-archive | v1
    images: tuple[ImportedImage, ...]
    blobs_written: int
    bytes_written: int
    seconds: float


# -- what an archive holds -----------------------------------------------------------------
@dataclass
class _Layer:
    member: str
    diff_id: str | None  # from the config (None: the config has no rootfs)
    blob: str | None  # digest the member's bytes must have (OCI descriptors, blob names)
    media_type: str | None  # OCI/docker media type when the archive says


@dataclass
class _Image:
    label: str  # how errors name it
    names: list[tuple[str, str]]  # (repository, tag)
    config: bytes = b""
    layers: list[_Layer] = field(default_factory=list)
    oci: bool = False
    original: bytes | None = None  # manifest bytes that may be kept when no layer changes
    children: list[_Image] = field(default_factory=list)  # an index: its images
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


def find_images(archive: Archive) -> tuple[str, list[_Image]]:
    if archive.has(OCI_LAYOUT) and archive.has(OCI_INDEX_FILE):
        return "oci", _oci_images(archive)
    if archive.has(DOCKER_MANIFEST_FILE):
        return "docker-archive", _docker_images(archive)
    if archive.has(V1_REPOSITORIES_FILE) or any(m.endswith("/layer.tar") for m in archive.members):
        return "v1", _v1_images(archive)
    raise ArchiveError("neither index.json, manifest.json nor repositories: not an image tarball")


def _docker_images(archive: Archive) -> list[_Image]:
    entries = archive.json(DOCKER_MANIFEST_FILE)
    if not isinstance(entries, list):
        raise ArchiveError("manifest.json is not a list")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("manifest.json entry without Config")
        names = [n for n in map(parse_name, entry.get("RepoTags") or []) if n]
        label = f"{names[0][0]}:{names[0][1]}" if names else entry["Config"]
        image = _Image(label, names)
        image.config = archive.read(entry["Config"])
        _check_name(entry["Config"], image.config)
        diff_ids = _diff_ids(image.config)
        members = entry.get("Layers") or []
        if diff_ids is not None and len(diff_ids) != len(members):
            raise ArchiveError(f"{len(members)} layers but the config lists {len(diff_ids)}")
        for position, member in enumerate(members):
            diff_id = diff_ids[position] if diff_ids else None
            image.layers.append(_Layer(member, diff_id, _named_blob(member), None))
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
    try:
        doc = json.loads(config)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError("image config is not JSON") from None
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else None


def _blob_member(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _oci_images(archive: Archive) -> list[_Image]:
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


def _oci_manifest(archive: Archive, desc: dict[str, Any], names: list) -> _Image | None:
    digest = desc.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ArchiveError(f"index.json descriptor with a bad digest: {digest!r}")
    member = _blob_member(digest)
    label = f"{names[0][0]}:{names[0][1]}" if names else digest
    if not archive.has(member):
        return None  # another platform of an index, not in this archive
    raw = archive.read(member)
    _check_name(member, raw)
    doc = json.loads(raw)
    media = doc.get("mediaType") or desc.get("mediaType")
    if media in mt.INDEX_TYPES:
        image = _Image(label, names, oci=media == mt.OCI_INDEX, original=raw)
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
    image = _Image(label, names, oci=media == mt.OCI_MANIFEST, original=raw)
    config = doc.get("config") or {}
    image.config = archive.read(_blob_member(config.get("digest", "")))
    _check_name(_blob_member(config["digest"]), image.config)
    diff_ids = _diff_ids(image.config) or []
    layers = doc.get("layers") or []
    if len(diff_ids) != len(layers):
        raise ArchiveError(f"manifest {digest}: {len(layers)} layers, config has {len(diff_ids)}")
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        image.layers.append(
            _Layer(_blob_member(layer["digest"]), diff_id, layer["digest"], layer.get("mediaType"))
        )
    return image


def _v1_images(archive: Archive) -> list[_Image]:
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
        parents = {json.loads(archive.read(f"{i}/json")).get("parent") for i in ids}
        tops = [(i, []) for i in sorted(ids - parents)]
    images = []
    for top, names in tops:
        label = f"{names[0][0]}:{names[0][1]}" if names else top
        image = _Image(label, names)
        chain, current = [], top
        while current:
            if current in chain or len(chain) > 1000:
                raise ArchiveError(f"image {top[:12]}: parent loop")
            chain.append(current)
            raw = archive.read(f"{current}/json")
            image.v1_jsons.insert(0, raw)
            parent = json.loads(raw).get("parent")
            current = parent if isinstance(parent, str) and parent else None
        image.layers = [_Layer(f"{i}/layer.tar", None, None, None) for i in reversed(chain)]
        images.append(image)
    return images


# -- writing -------------------------------------------------------------------------------
class _Importer:
    def __init__(self, archive: Archive, writer: V2Writer) -> None:
        self.archive = archive
        self.writer = writer
        self.created: list[str] = []
        self.bytes_written = 0

    def put(self, repo: str, chunks: Any) -> layerio.StoredBlob:
        stored = layerio.store_blob(self.writer, repo, chunks, link=False)
        if stored.created:
            self.created.append(stored.digest)
            self.bytes_written += stored.size
        return stored

    def blobs(self, repo: str, image: _Image) -> tuple[bytes, list[BlobRef]]:
        """Phase 1 for one image: layers (gzip), config and manifest blobs, no links yet.

        Returns the manifest bytes and the layer blobs."""
        if image.children:
            raws = [self.blobs(repo, child)[0] for child in image.children]
            manifest = self.index(image, raws)
            self.put(repo, (manifest,))
            return manifest, []
        refs, changed = [], False
        diff_ids = []
        for layer in image.layers:
            keep = layer.media_type in GZIP_TYPES and layer.blob is not None
            if keep and self.writer.has_blob(layer.blob):
                size = self.writer.blob_size(layer.blob) or 0
                refs.append(BlobRef(layer.blob, size))
                diff_ids.append(layer.diff_id)
                continue
            stream = layerio.GzipLayer(self.archive.chunks(layer.member), layer.diff_id, layer.blob)
            stored = self.put(repo, stream)
            changed = changed or stored.digest != layer.blob
            refs.append(BlobRef(stored.digest, stored.size))
            diff_ids.append(stream.diff_id)
        if image.v1_jsons:
            image.config = config_from_v1(image.v1_jsons, diff_ids).config
        self.put(repo, (image.config,))
        if image.original is not None and not changed:
            manifest = image.original
        else:
            manifest = build_manifest(image.config, refs, oci=image.oci)
        self.put(repo, (manifest,))
        return manifest, refs

    def index(self, image: _Image, raws: list[bytes]) -> bytes:
        if image.original is not None and all(
            c.original == raw for c, raw in zip(image.children, raws, strict=True)
        ):
            return image.original
        manifests = []
        for raw, platform in zip(raws, image.platforms, strict=True):
            desc: dict[str, Any] = {
                "mediaType": json.loads(raw)["mediaType"],
                "digest": digest_of(raw),
                "size": len(raw),
            }
            if platform:
                desc["platform"] = platform
            manifests.append(desc)
        media = mt.OCI_INDEX if image.oci else mt.DOCKER_MANIFEST_LIST
        doc = {"schemaVersion": 2, "mediaType": media, "manifests": manifests}
        return json.dumps(doc, indent=3).encode()

    def rollback(self) -> None:
        for digest in self.created:
            self.writer.driver.delete(v2paths.blob_dir(digest))


def import_tarball(path: Path, destination: Path, *, tag: str | None = None) -> ImportResult:
    """Import every image of the tarball at `path` into the v2 storage at `destination`."""
    started = time.monotonic()
    rename = _parse_tag(tag) if tag else None
    archive = Archive(path)
    try:
        try:
            kind, images = find_images(archive)
        except (ArchiveError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnreadableError(f"{path}: {exc}") from None
        if not images:
            raise UnreadableError(f"{path}: the archive holds no image")
        if rename is not None:
            if len(images) > 1:
                raise UsageError(f"--tag renames one image, but {path} holds {len(images)}")
            images[0].names = [rename]
        for image in images:
            if any(not repo for repo, _ in image.names):
                if rename is None:
                    raise UsageError(
                        f"image {image.label} has a tag but no repository name",
                        hint="pass --tag REPO:TAG",
                    )
            if not image.names:
                raise UsageError(
                    f"image {image.label} has no name in the archive", hint="pass --tag REPO:TAG"
                )
        existed = destination.exists()
        base, writer = open_destination(destination)
        try:
            with SharedLock(base):
                return _write(path, kind, images, writer, started, archive)
        except BaseException:
            if not existed:  # the storage this import created is removed again
                shutil.rmtree(destination, ignore_errors=True)
            raise
    finally:
        archive.close()


def _write(
    path: Path, kind: str, images: list[_Image], writer: V2Writer, started: float, archive: Archive
) -> ImportResult:
    importer = _Importer(archive, writer)
    staged = []
    for image in images:
        repo = image.names[0][0]
        try:
            staged.append((image, *importer.blobs(repo, image)))
        except (ArchiveError, layerio.LayerError, V1ConvertError, KeyError, ValueError) as exc:
            importer.rollback()
            raise UnreadableError(
                f"{path}: image {image.label}: {exc}",
                hint="nothing was written; the archive is damaged",
            ) from None
        except BaseException:
            importer.rollback()
            raise
    flush()  # blobs on disk before the manifests and tags that name them
    done = []
    for image, manifest, refs in staged:
        for repo, tag in image.names:
            status = _commit(writer, repo, tag, manifest)
            size = len(image.config) + sum(r.size for r in refs)
            done.append(ImportedImage(repo, tag, digest_of(manifest), len(refs), size, status))
    flush()
    return ImportResult(
        file=str(path),
        format=kind,
        images=tuple(done),
        blobs_written=len(importer.created),
        bytes_written=importer.bytes_written,
        seconds=round(time.monotonic() - started, 3),
    )


def _commit(writer: V2Writer, repo: str, tag: str, manifest: bytes) -> str:
    """Phase 2: links and revisions (an index's images first), then the tag."""
    written = _link_manifest(writer, repo, manifest)
    digest = digest_of(manifest)
    try:
        current = writer.driver.get(v2paths.tag_current_link(repo, tag)).decode()
    except (PathNotFound, UnicodeDecodeError):
        current = None
    if current != digest:
        writer.tag(repo, tag, digest)
        written = True
    return "written" if written else "present"


def _link_manifest(writer: V2Writer, repo: str, raw: bytes) -> bool:
    """Link what a manifest references into `repo`, then its revision; True if anything new."""
    doc = json.loads(raw)
    written = False
    if "manifests" in doc:
        for child in doc["manifests"]:
            child_raw = writer.driver.get(v2paths.blob_data(child["digest"]))
            written = _link_manifest(writer, repo, child_raw) or written
    else:
        for ref in [doc["config"], *doc["layers"]]:
            if not layerio.link_exists(writer, repo, ref["digest"]):
                writer.link_blob(repo, ref["digest"])
                written = True
    digest = digest_of(raw)
    if not writer.driver.exists(v2paths.revision_link(repo, digest)):
        writer.put_manifest(repo, raw)
        written = True
    return written


def _parse_tag(text: str) -> tuple[str, str]:
    try:
        ref = parse_reference(text)
    except ReferenceError_ as exc:
        raise UsageError(f"--tag: {exc}") from None
    if ref.digest:
        raise UsageError("--tag takes REPO[:TAG], not a digest")
    return ref.repository, ref.tag or "latest"
