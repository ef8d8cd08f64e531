"""Import image tarballs (docker save of every generation, podman save, OCI layout tars)
straight into the v2 layout.

The formats are told apart in tarformats.py; legacy v1 saves are converted exactly as
`migrate` converts a v1 chain. Layers held raw in the tar are gzip-compressed on the way in
(deterministic, so re-imports give the same digests); every layer's uncompressed digest is
checked against the config and every blob against its name.

The archive is read in one pass, never seeking, so stdin will do (`podman save | ssh host
regtool import -`): docker save writes manifest.json last, so every large member is
streamed into an upload session of the staging repository as it passes (tararchive.py),
before anyone knows what it is; small ones (JSON) are kept in memory. A raw-tar member
named by a diff_id that a stored layer has (tagged images' configs, diffids.py), or a gzip
member named by a stored blob, is only hashed. Once the manifests are known, phase 1 checks
every image and picks its blobs: a layer this import recompressed is replaced by a stored
blob of the same diff_id when there is one, so an image a client pushed and then saved and
imported elsewhere shares its layers. Only if all images are good does phase 2 publish the
blobs they use (the rest is discarded) and write links, manifests and tags; a tag that
named another image is `replaced` (or `kept` with overwrite=False). A
failure in phase 1 cancels the sessions, so the destination is left as it was; phase 2
never deletes a blob it published (another repository may link it by then) and says what
it left.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from regtool.errors import OperationalError, UnreadableError, UsageError
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.model.digest import digest_of, short
from regtool.model.reference import ReferenceError_, parse_reference
from regtool.model.v1convert import BlobRef, V1ConvertError, build_manifest, config_from_v1
from regtool.ops import layerio
from regtool.ops.destination import Destination, SharedLock, Target, open_destination
from regtool.ops.diffids import DiffIdIndex
from regtool.ops.staging import (
    Stage,
    current_tag,
    is_no_space,
    size_text,
    write_failure,
    write_tag,
)
from regtool.ops.tararchive import Archive, ArchiveError, named_digest
from regtool.ops.tarformats import Image, Layer, find_images
from regtool.storage.driver import StorageError


@dataclass(frozen=True, slots=True)
class ImportedImage:
    repository: str
    tag: str | None
    manifest: str
    layers: int
    size: int  # config + layer blob bytes
    status: str  # written | present | replaced | kept
    previous: str | None = None  # replaced or kept: the digest the tag named before


@dataclass(frozen=True, slots=True)
class ImportResult:
    file: str
    format: str  # oci | docker-archive | v1
    images: tuple[ImportedImage, ...]
    blobs_written: int
    bytes_written: int
    seconds: float
    layers_reused: int = 0  # layers found stored under another digest (same diff_id)

    @property
    def kept(self) -> tuple[ImportedImage, ...]:
        """Tags --no-overwrite left as they were."""
        return tuple(image for image in self.images if image.status == KEPT)


KEPT = "kept"
REPLACED = "replaced"
STAGING_REPOSITORY = "regtool-import"  # upload sessions before the names are known


@dataclass(frozen=True, slots=True)
class Absorbed:
    """A large member as it streamed past: its digests, and where its bytes went."""

    raw: str  # digest of the member's bytes
    source: str  # gzip, tar, xz, bzip2 or unknown
    diff_id: str | None  # digest of the uncompressed tar
    blob: str | None  # gzip blob staged (or already stored); None: only hashed
    size: int  # bytes of that blob
    problem: str | None = None  # why it cannot be a layer


# -- writing -------------------------------------------------------------------------------
class _Importer:
    def __init__(self, archive: Archive, out: Destination) -> None:
        self.archive = archive
        self.writer = out.writer
        self.stage = out.stage()
        self.index = DiffIdIndex(out.store)
        self.used: set[str] = set()  # staged digests some image needs
        self.reused = 0

    def absorb(self, name: str, chunks: Iterator[bytes]) -> Absorbed:
        """Phase 0, while the archive streams past: a member that may be a layer goes into an
        upload session as gzip (raw tars, xz and bzip2 recompressed), unless the storage
        already holds it (its name claims a stored gzip blob, or a raw tar's diff_id that a
        stored layer has): then it is only hashed. What it turns out to be is checked once
        the archive's manifests are known."""
        kind, stream = layerio.peek(chunks)
        if kind == layerio.UNKNOWN:  # not a layer (or one regtool cannot store): hashed only
            raw = layerio.Hasher()
            for _ in raw.tap(stream):
                pass
            problem = "not a tar, gzip, xz or bzip2 stream"
            return Absorbed(raw.digest, kind, None, None, raw.size, problem)
        claim = named_digest(name)
        try:
            if claim is not None and (
                (kind == layerio.GZIP and self.stage.has(claim))
                or (kind == layerio.TAR and self.index.get(claim) is not None)
            ):
                hashed = layerio.hash_layer(stream)
                blob = hashed.digest if kind == layerio.GZIP else None
                return Absorbed(hashed.digest, kind, hashed.diff_id, blob, hashed.size)
            raw = layerio.Hasher()
            layer = layerio.GzipLayer(raw.tap(stream))
            digest, size = self.stage.put(STAGING_REPOSITORY, layer)
            return Absorbed(raw.digest, kind, layer.diff_id, digest, size)
        except layerio.LayerError as exc:  # the archive skips the rest of the member
            return Absorbed("", kind, None, None, 0, str(exc))

    def layer(self, layer: Layer, keep_gzip: bool) -> tuple[BlobRef, str]:
        """The blob a layer of the archive is stored as, and its diff_id (checked).

        A layer recompressed on the way in is stored under a digest of regtool's making: a
        stored blob of the same diff_id serves as well, and is taken instead. A gzip layer
        too, unless `keep_gzip` (its manifest's digest is worth keeping)."""
        entry = self.archive.entry(layer.member)
        if entry.absorbed is None:  # a small member kept in memory
            entry.absorbed = self.absorb(layer.member, iter((entry.data or b"",)))
        found: Absorbed = entry.absorbed
        if layer.blob is not None and found.raw != layer.blob and not found.problem:
            raise layerio.LayerError(f"content is {found.raw}, but it is named {layer.blob}")
        if found.problem:
            raise layerio.LayerError(found.problem)
        assert found.diff_id is not None
        if layer.diff_id is not None and found.diff_id != layer.diff_id:
            raise layerio.LayerError(
                f"uncompressed layer is {found.diff_id}, config says {layer.diff_id}"
            )
        digest = found.blob
        if found.source != layerio.GZIP or not keep_gzip:
            stored = self.index.get(found.diff_id)
            if stored is not None and stored != digest:
                digest = stored
                self.reused += 1
        if digest is None:
            raise layerio.LayerError(f"layer {found.diff_id} is no longer stored")
        self.used.add(digest)
        return BlobRef(digest, self._size(digest)), found.diff_id

    def blobs(self, repo: str, image: Image) -> tuple[bytes, list[BlobRef]]:
        """Phase 1 for one image: layers (gzip), config and manifest staged, nothing linked.

        Returns the manifest bytes and the layer blobs."""
        if image.children:
            raws = [self.blobs(repo, child)[0] for child in image.children]
            manifest = self.index_of(image, raws)
            self.put(manifest)
            return manifest, []
        refs, changed = [], False
        diff_ids = []
        for layer in image.layers:
            ref, diff_id = self.layer(layer, keep_gzip=image.original is not None)
            changed = changed or ref.digest != layer.blob
            refs.append(ref)
            diff_ids.append(diff_id)
        if image.v1_jsons:
            image.config = config_from_v1(image.v1_jsons, diff_ids).config
        self.put(image.config)
        if image.original is not None and not changed:
            manifest = image.original
        else:
            manifest = build_manifest(image.config, refs, oci=image.oci)
        self.put(manifest)
        return manifest, refs

    def put(self, data: bytes) -> None:
        digest, _ = self.stage.put(STAGING_REPOSITORY, (data,))
        self.used.add(digest)

    def _size(self, digest: str) -> int:
        staged = self.stage.staged.get(digest)
        if staged is not None:
            return staged.size
        return self.writer.blob_size(digest) or 0

    def index_of(self, image: Image, raws: list[bytes]) -> bytes:
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
    path: Path,
    destination: Path | None,
    *,
    tag: str | None = None,
    config: Path | None = None,
    stream: BinaryIO | None = None,
    overwrite: bool = True,
) -> ImportResult:
    """Import every image of the tarball at `path` (or read from `stream`, in one pass: a
    pipe will do) into the v2 storage at `destination` (None: the S3 bucket `config`
    names). `overwrite=False` leaves tags that name another manifest as they are (status
    `kept`)."""
    started = time.monotonic()
    rename = _parse_tag(tag) if tag else None
    label = "stdin" if stream is not None else str(path)
    archive = Archive(stream if stream is not None else path, label)
    existed = destination is None or destination.exists()
    target = Target(destination, config if destination is None else None, V1_HINT)
    out = open_destination(target)
    try:
        with SharedLock(out.store):
            run = _Run(label, archive, out, rename, overwrite)
            return run.go(started)
    except BaseException:
        if not existed and destination is not None:  # the root this import created goes
            shutil.rmtree(destination, ignore_errors=True)
        raise
    finally:
        archive.close()


V1_HINT = "import into a v2 root, or run `regtool migrate` first"


def _check_names(label: str, images: list[Image], rename: tuple[str, str] | None) -> None:
    if not images:
        raise UnreadableError(f"{label}: the archive holds no image")
    if rename is not None:
        if len(images) > 1:
            raise UsageError(f"--tag renames one image, but {label} holds {len(images)}")
        images[0].names = [rename]
    for image in images:
        if any(not repo for repo, _ in image.names) and rename is None:
            raise UsageError(
                f"image {image.label} has a tag but no repository name",
                hint="pass --tag REPO:TAG",
            )
        if not image.names:
            raise UsageError(
                f"image {image.label} has no name in the archive", hint="pass --tag REPO:TAG"
            )


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


class _Run:
    """One import: the pass over the archive, then phase 1 (every image checked, its blobs
    staged) and phase 2 (blobs published, then links, revisions and tags)."""

    def __init__(
        self,
        label: str,
        archive: Archive,
        out: Destination,
        rename: tuple[str, str] | None,
        overwrite: bool,
    ) -> None:
        self.label = label
        self.archive = archive
        self.out = out
        self.rename = rename
        self.overwrite = overwrite

    def go(self, started: float) -> ImportResult:
        label, out = self.label, self.out
        importer = _Importer(self.archive, out)
        stage = importer.stage
        staged: list[tuple[Image, bytes, list[BlobRef]]] = []
        commit = _Commit(out.writer, self.overwrite)
        try:
            try:
                try:  # the one pass: large members staged as they come, small ones kept
                    self.archive.scan(importer.absorb)
                    kind, images = find_images(self.archive)
                except (ArchiveError, *_DAMAGED) as exc:
                    raise UnreadableError(f"{label}: {_why(exc)}") from None
                _check_names(label, images, self.rename)
                for image in images:  # phase 1: every image checked, nothing public yet
                    try:
                        staged.append((image, *importer.blobs(image.names[0][0], image)))
                    except (ArchiveError, *_DAMAGED) as exc:
                        raise UnreadableError(
                            f"{label}: image {image.label}: {_why(exc)}",
                            hint="nothing was written; the archive is damaged",
                        ) from None
                # phase 2: blobs published (renames), then links, revisions and tags
                stage.publish(importer.used)
                out.flush()  # blobs on disk before the manifests and tags that name them
                for image, manifest, refs in staged:
                    for repo, tag in image.names:
                        status, previous = commit.image(repo, tag, manifest)
                        size = len(image.config) + sum(r.size for r in refs)
                        digest = digest_of(manifest)
                        commit.done.append(
                            ImportedImage(repo, tag, digest, len(refs), size, status, previous)
                        )
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
            raise OperationalError(f"cannot import {label}: {reason}; {left}", hint=hint) from None
        return ImportResult(
            file="-" if label == "stdin" else label,
            format=kind,
            images=tuple(commit.done),
            blobs_written=len(stage.published),
            bytes_written=stage.published_bytes,
            seconds=round(time.monotonic() - started, 3),
            layers_reused=importer.reused,
        )


NOTHING = "nothing was written"
REUSE_HINT = (
    "it reuses what was written; `regtool gc` frees what no tag uses "
    "(untagged manifests with --delete-untagged)"
)


class _Commit:
    """Phase 2: links and revisions (an index's images first), then tags; remembers what
    it wrote so that a failure can say exactly what it left."""

    def __init__(self, writer: V2Writer, overwrite: bool = True) -> None:
        self.writer = writer
        self.overwrite = overwrite
        self.done: list[ImportedImage] = []
        self.uses: dict[tuple[str, str], set[str]] = {}  # (repo, manifest) -> digests
        self.revisions: list[tuple[str, str]] = []  # (repo, digest) written by this import

    def image(self, repo: str, tag: str, manifest: bytes) -> tuple[str, str | None]:
        """Link and tag one image: (status, the digest the tag named before when it moved
        or was kept)."""
        written = self.link_manifest(repo, manifest)
        digest = digest_of(manifest)
        current = current_tag(self.writer, repo, tag)
        if current is not None and current != digest:
            if not self.overwrite:
                return KEPT, current
            write_tag(self.writer, repo, tag, digest, new=False)
            return REPLACED, current
        if current is None:
            write_tag(self.writer, repo, tag, digest, new=True)
            written = True
        return ("written" if written else "present"), None

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
