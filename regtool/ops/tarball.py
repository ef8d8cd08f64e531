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
from regtool.model.digest import digest_of, short
from regtool.model.reference import ReferenceError_, parse_reference
from regtool.model.v1convert import BlobRef, V1ConvertError, build_manifest, config_from_v1
from regtool.ops import layerio
from regtool.ops.destination import Destination, SharedLock, Target, open_destination
from regtool.ops.staging import Stage, is_no_space, size_text, write_failure, write_tag
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
    def __init__(self, archive: Archive, out: Destination) -> None:
        self.archive = archive
        self.writer = out.writer
        self.stage = out.stage()

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
            if (
                layer.media_type in GZIP_TYPES
                and layer.blob is not None
                and layer.diff_id is not None
                and self.stage.has(layer.blob)
            ):
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


def import_tarball(
    path: Path, destination: Path | None, *, tag: str | None = None, config: Path | None = None
) -> ImportResult:
    """Import every image of the tarball at `path` into the v2 storage at `destination`
    (None: the S3 bucket `config` names)."""
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
        existed = destination is None or destination.exists()
        out = open_destination(Target(destination, config if destination is None else None))
        try:
            with SharedLock(out.store):
                return _write(path, kind, images, out, started, archive)
        except BaseException:
            if not existed and destination is not None:  # the root this import created goes
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
    path: Path, kind: str, images: list[Image], out: Destination, started: float, archive: Archive
) -> ImportResult:
    importer = _Importer(archive, out)
    writer = out.writer
    stage = importer.stage
    staged = []
    commit = _Commit(writer)
    try:
        try:  # phase 1: every blob of every image staged and checked, nothing public yet
            for image in images:
                try:
                    staged.append((image, *importer.blobs(image.names[0][0], image)))
                except (ArchiveError, *_DAMAGED) as exc:
                    raise UnreadableError(
                        f"{path}: image {image.label}: {_why(exc)}",
                        hint="nothing was written; the archive is damaged",
                    ) from None
            # phase 2: blobs published (renames), then links, revisions and tags
            stage.publish()
            out.flush()  # blobs on disk before the manifests and tags that name them
            for image, manifest, refs in staged:
                for repo, tag in image.names:
                    status = commit.image(repo, tag, manifest)
                    size = len(image.config) + sum(r.size for r in refs)
                    digest = digest_of(manifest)
                    commit.done.append(ImportedImage(repo, tag, digest, len(refs), size, status))
            out.flush()
        finally:
            stage.discard()  # sessions not published, and the empty folders made for them
    except (OSError, StorageError) as exc:
        reason = write_failure(exc)
        if is_no_space(exc):
            reason += f" in {out.store.location}"
        left = commit.left(stage, sum(len(image.names) for image, _, _ in staged))
        hint = ("free some space and run" if is_no_space(exc) else "fix that and run") + (
            " the import again" if left == NOTHING else f" the import again: {REUSE_HINT}"
        )
        raise OperationalError(f"cannot import {path}: {reason}; {left}", hint=hint) from None
    return ImportResult(
        file=str(path),
        format=kind,
        images=tuple(commit.done),
        blobs_written=len(stage.published),
        bytes_written=stage.published_bytes,
        seconds=round(time.monotonic() - started, 3),
    )


NOTHING = "nothing was written"
REUSE_HINT = (
    "it reuses what was written; `regtool gc` frees what no tag uses "
    "(untagged manifests with --delete-untagged)"
)


class _Commit:
    """Phase 2: links and revisions (an index's images first), then tags; remembers what
    it wrote so that a failure can say exactly what it left."""

    def __init__(self, writer: V2Writer) -> None:
        self.writer = writer
        self.done: list[ImportedImage] = []
        self.uses: dict[tuple[str, str], set[str]] = {}  # (repo, manifest) -> digests
        self.revisions: list[tuple[str, str]] = []  # (repo, digest) written by this import

    def image(self, repo: str, tag: str, manifest: bytes) -> str:
        written = self.link_manifest(repo, manifest)
        digest = digest_of(manifest)
        try:
            current = self.writer.driver.get(v2paths.tag_current_link(repo, tag)).decode()
        except (PathNotFound, UnicodeDecodeError):
            current = None
        if current != digest:
            write_tag(self.writer, repo, tag, digest, new=current is None)
            written = True
        return "written" if written else "present"

    def link_manifest(self, repo: str, raw: bytes) -> bool:
        """Link what a manifest references into `repo`, then its revision; True if new."""
        doc = json.loads(raw)
        digest = digest_of(raw)
        uses = self.uses.setdefault((repo, digest), {digest})
        written = False
        if "manifests" in doc:
            for child in doc["manifests"]:
                child_raw = self.writer.driver.get(v2paths.blob_data(child["digest"]))
                written = self.link_manifest(repo, child_raw) or written
                uses |= self.uses[(repo, child["digest"])]
        else:
            for ref in [doc["config"], *doc["layers"]]:
                uses.add(ref["digest"])
                if not layerio.link_exists(self.writer, repo, ref["digest"]):
                    self.writer.link_blob(repo, ref["digest"])
                    written = True
        if not self.writer.driver.exists(v2paths.revision_link(repo, digest)):
            self.writer.put_manifest(repo, raw)
            self.revisions.append((repo, digest))
            written = True
        return written

    def left(self, stage: Stage, tags: int) -> str:
        """Exactly what a failed import leaves in the storage."""
        used: set[str] = set()
        tagged: set[tuple[str, str]] = set()
        for image in self.done:
            used |= self.uses.get((image.repository, image.manifest), set())
            tagged |= {(image.repository, d) for d in used}
        parts = []
        if self.done:
            names = ", ".join(f"{d.repository}:{d.tag}" for d in self.done)
            parts.append(f"{len(self.done)} of {tags} tag(s) ({names})")
        untagged = [f"{r}@{short(d)}" for r, d in self.revisions if (r, d) not in tagged]
        if untagged:
            parts.append(f"{len(untagged)} untagged manifest(s) ({', '.join(untagged)})")
        unused = [b for b in stage.published if b.digest not in used]
        if unused:
            size = size_text(sum(b.size for b in unused))
            parts.append(f"{len(unused)} new blob(s) ({size}) that no tag uses")
        return "written before that: " + ", ".join(parts) if parts else NOTHING


def _parse_tag(text: str) -> tuple[str, str]:
    try:
        ref = parse_reference(text)
    except ReferenceError_ as exc:
        raise UsageError(f"--tag: {exc}") from None
    if ref.digest:
        raise UsageError("--tag takes REPO[:TAG], not a digest")
    return ref.repository, ref.tag or "latest"
