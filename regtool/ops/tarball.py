"""Import image tarballs (docker save of every generation, podman save, OCI layout tars)
straight into the v2 layout.

The formats are told apart in tarformats.py; legacy v1 saves are converted exactly as
`migrate` converts a v1 chain. Layers held raw in the tar are gzip-compressed on the way in
(deterministic, so re-imports give the same digests); every layer's uncompressed digest is
checked against the config and every blob against its name. Phase 1 stages the blobs of
every image in upload sessions, where no registry client can link them (staging.py); only if
all of them are good does phase 2 publish them and write links, manifests and tags. A
failure in phase 1 cancels the sessions, so the destination is left as it was; phase 2
never deletes a blob it published (another repository may link it by then) and says what
it left.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import OperationalError, UnreadableError, UsageError
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.model.digest import digest_of
from regtool.model.reference import ReferenceError_, parse_reference
from regtool.model.v1convert import BlobRef, V1ConvertError, build_manifest, config_from_v1
from regtool.ops import layerio
from regtool.ops.migrate import SharedLock, flush, open_destination
from regtool.ops.staging import Stage, is_no_space, size_text, write_failure
from regtool.ops.tararchive import Archive, ArchiveError
from regtool.ops.tarformats import GZIP_TYPES, Image, find_images
from regtool.storage.driver import PathNotFound, StorageError


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


# -- writing -------------------------------------------------------------------------------
class _Importer:
    def __init__(self, archive: Archive, writer: V2Writer) -> None:
        self.archive = archive
        self.writer = writer
        self.stage = Stage(writer)

    def blobs(self, repo: str, image: Image) -> tuple[bytes, list[BlobRef]]:
        """Phase 1 for one image: layers (gzip), config and manifest staged, nothing linked.

        Returns the manifest bytes and the layer blobs."""
        if image.children:
            raws = [self.blobs(repo, child)[0] for child in image.children]
            manifest = self.index(image, raws)
            self.stage.put(repo, (manifest,))
            return manifest, []
        refs, changed = [], False
        diff_ids = []
        for layer in image.layers:
            keep = layer.media_type in GZIP_TYPES and layer.blob is not None
            if keep and self.stage.has(layer.blob):
                refs.append(BlobRef(layer.blob, self._size(layer.blob)))
                diff_ids.append(layer.diff_id)
                continue
            stream = layerio.GzipLayer(self.archive.chunks(layer.member), layer.diff_id, layer.blob)
            digest, size = self.stage.put(repo, stream)
            changed = changed or digest != layer.blob
            refs.append(BlobRef(digest, size))
            diff_ids.append(stream.diff_id)
        if image.v1_jsons:
            image.config = config_from_v1(image.v1_jsons, diff_ids).config
        self.stage.put(repo, (image.config,))
        if image.original is not None and not changed:
            manifest = image.original
        else:
            manifest = build_manifest(image.config, refs, oci=image.oci)
        self.stage.put(repo, (manifest,))
        return manifest, refs

    def _size(self, digest: str) -> int:
        staged = self.stage.staged.get(digest)
        if staged is not None:
            return staged.size
        return self.writer.blob_size(digest) or 0

    def index(self, image: Image, raws: list[bytes]) -> bytes:
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


def import_tarball(path: Path, destination: Path, *, tag: str | None = None) -> ImportResult:
    """Import every image of the tarball at `path` into the v2 storage at `destination`."""
    started = time.monotonic()
    rename = _parse_tag(tag) if tag else None
    archive = Archive(path)
    try:
        try:
            kind, images = find_images(archive)
        except (ArchiveError, *_DAMAGED) as exc:
            raise UnreadableError(f"{path}: {_why(exc)}") from None
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


# what a hostile or damaged archive makes the parsing code raise
_DAMAGED = (
    layerio.LayerError,
    V1ConvertError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    RecursionError,
)


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return str(exc)


def _write(
    path: Path, kind: str, images: list[Image], writer: V2Writer, started: float, archive: Archive
) -> ImportResult:
    importer = _Importer(archive, writer)
    stage = importer.stage
    staged = []
    try:  # phase 1: every blob of every image staged and checked, nothing public yet
        for image in images:
            try:
                staged.append((image, *importer.blobs(image.names[0][0], image)))
            except (ArchiveError, *_DAMAGED) as exc:
                raise UnreadableError(
                    f"{path}: image {image.label}: {_why(exc)}",
                    hint="nothing was written; the archive is damaged",
                ) from None
    except BaseException as exc:
        stage.discard()
        if isinstance(exc, (OSError, StorageError)):
            raise OperationalError(
                f"cannot import {path}: {write_failure(exc)} in {writer_root(writer)}; "
                "nothing was written",
                hint="free some space and run the import again" if is_no_space(exc) else None,
            ) from None
        raise
    done: list[ImportedImage] = []
    try:  # phase 2: blobs published (renames), then links, revisions and tags
        stage.publish()
        flush()  # blobs on disk before the manifests and tags that name them
        for image, manifest, refs in staged:
            for repo, tag in image.names:
                status = _commit(writer, repo, tag, manifest)
                size = len(image.config) + sum(r.size for r in refs)
                done.append(ImportedImage(repo, tag, digest_of(manifest), len(refs), size, status))
        flush()
    except (OSError, StorageError) as exc:
        stage.discard()
        raise OperationalError(
            f"import of {path} stopped: {write_failure(exc)}; {_left(stage, staged, done)}",
            hint="free some space and run the import again" if is_no_space(exc) else None,
        ) from None
    except BaseException:
        stage.discard()
        raise
    return ImportResult(
        file=str(path),
        format=kind,
        images=tuple(done),
        blobs_written=len(stage.published),
        bytes_written=stage.published_bytes,
        seconds=round(time.monotonic() - started, 3),
    )


def writer_root(writer: V2Writer) -> str:
    return str(getattr(writer.driver, "root", "the storage"))


def _left(stage: Stage, staged: list, done: list[ImportedImage]) -> str:
    """Exactly what a failed phase 2 leaves in the storage."""
    total = sum(len(image.names) for image, _, _ in staged)
    tags = ", ".join(f"{d.repository}:{d.tag}" for d in done) or "none"
    used: set[str] = set()
    for image, manifest, refs in staged:
        if any((d.repository, d.tag) in image.names for d in done):
            used |= _digests(image, manifest, refs)
    unused = [b for b in stage.published if b.digest not in used]
    size = sum(b.size for b in unused)
    blobs = f"{len(unused)} blob(s) ({size_text(size)}) stored that no tag uses, left for gc"
    return f"{len(done)} of {total} tag(s) written ({tags}); {blobs}"


def _digests(image: Image, manifest: bytes, refs: list[BlobRef]) -> set[str]:
    found = {digest_of(manifest), digest_of(image.config), *(r.digest for r in refs)}
    for child in image.children:
        if child.original is not None:
            found.add(digest_of(child.original))
    return found


def _commit(writer: V2Writer, repo: str, tag: str, manifest: bytes) -> str:
    """Phase 2: links and revisions (an index's images first), then the tag."""
    written = _link_manifest(writer, repo, manifest)
    digest = digest_of(manifest)
    try:
        current = writer.driver.get(v2paths.tag_current_link(repo, tag)).decode()
    except (PathNotFound, UnicodeDecodeError):
        current = None
    if current != digest:
        try:
            writer.tag(repo, tag, digest)
        except BaseException:
            if current is None:  # a half-written new tag (index link, no current) goes
                writer.untag(repo, tag)
            raise
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
