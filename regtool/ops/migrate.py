"""Migrate a legacy v1 tree into distribution's v2 layout (a local root or an S3 bucket,
see destination.py), chain by chain.

plan_migration reads the v1 tree (never writing) and lists, per tag, the chain of v1
images to convert, its layer bytes, the layers to recompress and why a chain cannot be
converted. apply_migration writes the plan: for each chain it first reads every layer
(digest + diff_id; a corrupt layer stops the chain before anything is written), then
writes layer blobs, the config, the manifest (blob + revision link) and last the tag, so
an interruption leaves no tag pointing at a missing manifest. What already exists is left
alone, so a re-run writes nothing new. Every file of the v1 tree is read through
v1guard.py (no symlink followed, regular files only, image ids only); a write error (a
full disk) stops the run with one line saying what was written, and leaves no temp file
and no empty folder (staging.Tidying).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from regtool.errors import OperationalError, RootError
from regtool.layout.reader import TagLink
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v1.reader import V1Reader
from regtool.layout.v2 import paths as v2paths
from regtool.layout.v2.writer import DigestMismatch
from regtool.model.digest import digest_of
from regtool.model.reference import valid_name, valid_tag
from regtool.model.v1convert import BlobRef, V1ConvertError, build_manifest, config_from_v1
from regtool.ops import layerio
from regtool.ops.destination import Destination, SharedLock, Target, open_destination
from regtool.ops.diffids import DiffIdIndex
from regtool.ops.staging import current_tag, is_no_space, size_text, write_failure, write_tag
from regtool.ops.v1guard import Guard
from regtool.storage.driver import StorageError

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One v1 tag and the chain of images that becomes one v2 image."""

    source: str  # v1 name:tag as stored (library/busybox:latest)
    repository: str  # v2 name it is written to
    tag: str
    image: str  # top v1 image id
    images: tuple[str, ...]  # v1 ids, base first
    layer_bytes: int  # stored layer bytes of the chain
    recompress: tuple[str, ...]  # v1 ids whose layer is xz, bzip2 or a plain tar
    problem: str | None  # why the chain is skipped
    existing: str | None = None  # the digest the destination's tag names now, if any


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    source: str
    destination: str  # a local root, or the s3:// location of `config`'s bucket
    oci: bool
    chains: tuple[ChainEntry, ...]
    images: int  # distinct v1 images of the chains that will be converted
    layer_bytes: int  # their distinct stored layer bytes
    recompress: tuple[str, ...]  # distinct v1 ids to recompress
    config: str | None = None  # the config naming the destination bucket (None: local)

    @property
    def target(self) -> Target:
        if self.config is not None:
            return Target(None, Path(self.config))
        return Target(Path(self.destination))

    @property
    def ready(self) -> tuple[ChainEntry, ...]:
        return tuple(c for c in self.chains if c.problem is None)

    @property
    def skipped(self) -> tuple[ChainEntry, ...]:
        return tuple(c for c in self.chains if c.problem is not None)

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(sorted({c.repository for c in self.ready}))


@dataclass(frozen=True, slots=True)
class MigratedTag:
    source: str
    repository: str
    tag: str
    manifest: str
    status: str  # written | present | replaced | kept
    previous: str | None = None  # replaced or kept: the digest the tag named before


@dataclass(frozen=True, slots=True)
class SkippedTag:
    source: str
    problem: str


@dataclass(frozen=True, slots=True)
class MigrationResult:
    migrated: tuple[MigratedTag, ...]
    skipped: tuple[SkippedTag, ...]
    repositories: int
    tags: int
    blobs_written: int
    blobs_present: int
    bytes_written: int
    seconds: float
    layers_reused: int = 0  # layers stored before under another digest (same diff_id)

    @property
    def kept(self) -> tuple[MigratedTag, ...]:
        """Tags --no-overwrite left as they were."""
        return tuple(tag for tag in self.migrated if tag.status == KEPT)


KEPT = "kept"
REPLACED = "replaced"


# -- planning -------------------------------------------------------------------------------
def destination_name(v1_name: str, keep_library: bool) -> str:
    prefix = v1paths.LIBRARY + "/"
    if not keep_library and v1_name.startswith(prefix):
        return v1_name[len(prefix) :]
    return v1_name


def _open_v1(source: Path) -> V1Reader:
    reader = open_storage(source).reader
    if not isinstance(reader, V1Reader):
        raise RootError(
            f"{source} is not a legacy v1 tree (no images/ or repositories/)",
            hint="--from names the v1 storage_path, the folder holding images/",
        )
    return reader


def plan_migration(
    source: Path,
    destination: Path | None,
    *,
    config: Path | None = None,
    oci: bool = False,
    keep_library: bool = False,
) -> MigrationPlan:
    """What migrating `source` (v1) into `destination` (v2) would write. Reads only.

    `destination` None: the S3 bucket `config` names."""
    reader = _open_v1(source)
    target = Target(destination, None if destination is not None else config)
    location = target.check()
    sniffed: dict[str, str] = {}
    guard = Guard(reader.driver)
    chains = []
    for repo in reader.repositories():
        for link in reader.tags(repo.name):
            chains.append(_plan_chain(reader, guard, link, keep_library, sniffed))
    chains = _with_existing_tags(target, chains)
    counted: dict[str, int] = {}
    recompress: list[str] = []
    for chain in chains:
        if chain.problem is not None:
            continue
        for image_id in chain.images:
            if image_id not in counted:
                counted[image_id] = reader.image(image_id).layer_size or 0
                if sniffed.get(image_id) != layerio.GZIP:
                    recompress.append(image_id)
    return MigrationPlan(
        source=str(source),
        destination=location,
        oci=oci,
        chains=tuple(chains),
        images=len(counted),
        layer_bytes=sum(counted.values()),
        recompress=tuple(recompress),
        config=str(config) if target.bucket else None,
    )


def _with_existing_tags(target: Target, chains: list[ChainEntry]) -> list[ChainEntry]:
    """The chains, each with the digest its destination tag names now (reads only)."""
    if target.root is not None and not target.root.exists():
        return chains
    reader = open_storage(target.root, target.config, bulk=False).reader
    names = {repo.name for repo in reader.repositories()}
    current: dict[tuple[str, str], str] = {}
    for repo in sorted({c.repository for c in chains if c.problem is None} & names):
        for link in reader.tags(repo):
            if link.digest is not None:
                current[(repo, link.tag)] = link.digest
    return [replace(c, existing=current.get((c.repository, c.tag))) for c in chains]


def _plan_chain(
    reader: V1Reader,
    guard: Guard,
    link: TagLink,
    keep_library: bool,
    sniffed: dict[str, str],
) -> ChainEntry:
    tag, image = link.tag, link.digest
    repository = destination_name(link.repository, keep_library)
    source = f"{link.repository}:{tag}"

    def skipped(problem: str, images: tuple[str, ...] = ()) -> ChainEntry:
        return ChainEntry(source, repository, tag, image or "", images, 0, (), problem)

    tag_problem = guard.problem(link.path)
    if tag_problem is not None:
        return skipped(f"tag file {tag_problem}")
    if image is None:
        return skipped(f"tag file unreadable: {getattr(link.issue, 'message', link.issue)}")
    if not valid_name(repository):
        return skipped(f"{repository!r} is not a valid v2 repository name")
    if not valid_tag(tag):
        return skipped(f"{tag!r} is not a valid v2 tag")
    walk_problem = guard.parents_problem(reader, image)  # before the reader follows them
    if walk_problem is not None:
        return skipped(walk_problem)
    top_first, _ = reader.chain(image)
    images = tuple(reversed(top_first))
    for position, image_id in enumerate(top_first):
        files_problem = guard.image_problem(image_id)
        if files_problem is not None:
            return skipped(files_problem, images)
        info = reader.image(image_id)
        if info.issues:
            what = "image" if position == 0 else "parent"
            return skipped(f"{what} {image_id[:12]}: {info.issues[0].message}", images)
        parent = top_first[position + 1] if position + 1 < len(top_first) else None
        assert info.json is not None
        if info.json.parent != parent:
            return skipped(
                f"image {image_id[:12]}: json parent {str(info.json.parent)[:12]} does not match "
                "its ancestry",
                images,
            )
        if image_id not in sniffed:
            sniffed[image_id] = _sniff(guard, image_id)
        if sniffed[image_id] == layerio.UNKNOWN:
            return skipped(f"image {image_id[:12]}: layer is not a tar, gzip, xz or bzip2", images)
    size = sum(reader.image(i).layer_size or 0 for i in images)
    recompress = tuple(i for i in images if sniffed[i] != layerio.GZIP)
    return ChainEntry(source, repository, tag, image, images, size, recompress, None)


def _sniff(guard: Guard, image_id: str) -> str:
    try:
        with guard.open(v1paths.image_layer(image_id)) as handle:
            return layerio.sniff(handle.read(layerio.SNIFF_BYTES))
    except StorageError:
        return layerio.UNKNOWN


# -- applying -------------------------------------------------------------------------------
class _Run:
    """State of one apply: layers already hashed or written, counters."""

    def __init__(self, reader: V1Reader, out: Destination, progress: Progress | None) -> None:
        self.reader = reader
        self.guard = Guard(reader.driver)
        self.out = out
        self.writer = out.writer
        self.progress = progress
        self.hashed: dict[str, layerio.LayerDigests] = {}
        self.blob_of: dict[str, str] = {}  # v1 id -> blob digest written or found
        self.blobs_written = 0
        self.blobs_present = 0
        self.bytes_written = 0
        self.index = DiffIdIndex(out.store)
        self.layers_reused = 0

    def layer_chunks(self, image_id: str, count: bool = False) -> Iterator[bytes]:
        with self.guard.open(v1paths.image_layer(image_id)) as handle:
            for chunk in layerio.read_chunks(handle):
                if count and self.progress is not None:
                    self.progress(len(chunk))
                yield chunk

    def hash_chain(self, chain: ChainEntry) -> list[layerio.LayerDigests]:
        for image_id in chain.images:
            if image_id not in self.hashed:
                self.hashed[image_id] = layerio.hash_layer(self.layer_chunks(image_id, True))
        return [self.hashed[i] for i in chain.images]

    def count(self, created: bool, size: int) -> None:
        if created:
            self.blobs_written += 1
            self.bytes_written += size
        else:
            self.blobs_present += 1

    def convert(self, chain: ChainEntry, oci: bool) -> tuple[str, bool] | SkippedTag:
        """Layers, config and manifest of one chain (no tag): (manifest digest, anything
        written), or why the chain is skipped (its layers read before anything is written)."""
        try:
            digests = self.hash_chain(chain)
            jsons = [self.guard.get(v1paths.image_json(i)) for i in chain.images]
            converted = config_from_v1(jsons, [d.diff_id for d in digests])
        except (layerio.LayerError, V1ConvertError) as exc:
            return SkippedTag(chain.source, f"{chain.image[:12]}: {exc}")
        except StorageError as exc:
            return SkippedTag(chain.source, f"{exc.path}: {exc.message}")
        layers = [
            self.put_layer(chain.repository, image_id, d)
            for image_id, d in zip(chain.images, digests, strict=True)
        ]
        self.put_small(chain.repository, converted.config)
        manifest = build_manifest(converted.config, layers, oci=oci)
        before = self.blobs_written
        digest, changed = self.put_manifest(chain.repository, manifest)
        return digest, changed or self.blobs_written > before

    def put_layer(self, repo: str, image_id: str, digests: layerio.LayerDigests) -> BlobRef:
        known = self.blob_of.get(image_id)
        if known is None and not digests.recompressed and self.writer.has_blob(digests.digest):
            known = digests.digest
            self.count(False, digests.size)
        if known is None:  # the same tar stored already, under another compression
            known = self.index.get(digests.diff_id)
            if known is not None:
                self.layers_reused += 1
                self.count(False, digests.size)
        if known is None:
            if digests.recompressed:
                chunks = layerio.gzip_chunks(
                    layerio.decompress(self.layer_chunks(image_id), digests.source)
                )
                stage = self.out.stage()
                try:  # through an upload session: the digest is known only at the end
                    known, size = stage.put(repo, chunks)
                    stage.publish()
                finally:
                    stage.discard()  # and no `_uploads` folder left that it made
                self.count(bool(stage.published), size)
            else:  # the stored gzip bytes, digest known from hashing: no upload folder needed
                try:
                    size = self.writer.put_blob_stream(digests.digest, self.layer_chunks(image_id))
                except DigestMismatch:
                    raise StorageError(
                        v1paths.image_layer(image_id), "layer changed while migrating"
                    ) from None
                self.count(True, size)
                known = digests.digest
            self.index.add(digests.diff_id, known)
        self.blob_of[image_id] = known
        self.ensure_link(repo, known)
        stored = self.writer.blob_size(known)
        return BlobRef(known, stored if stored is not None else digests.size)

    def ensure_link(self, repo: str, digest: str) -> None:
        if not layerio.link_exists(self.writer, repo, digest):
            self.writer.link_blob(repo, digest)

    def put_small(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        created = not self.writer.has_blob(digest)
        if created:
            self.writer.put_blob(repo, data)
        else:
            self.ensure_link(repo, digest)
        self.count(created, len(data))
        return digest

    def put_manifest(self, repo: str, raw: bytes) -> tuple[str, bool]:
        """Manifest blob and revision link; returns (digest, anything written)."""
        digest = digest_of(raw)
        created = not self.writer.has_blob(digest)
        changed = created or not self.writer.driver.exists(v2paths.revision_link(repo, digest))
        if changed:
            self.writer.put_manifest(repo, raw)
        self.count(created, len(raw))
        return digest, changed

    def put_tag(
        self, repo: str, tag: str, digest: str, overwrite: bool
    ) -> tuple[str | None, str | None]:
        """Point the tag at `digest`: (REPLACED or KEPT or "written" or None when it
        named `digest` already, the digest it named before when that differed)."""
        current = current_tag(self.writer, repo, tag)
        if current == digest:
            return None, None
        if current is not None and not overwrite:
            return KEPT, current
        write_tag(self.writer, repo, tag, digest, new=current is None)
        return (REPLACED, current) if current is not None else ("written", None)


def _stopped(exc: BaseException, base: str, run: _Run, tagged: int, ready: int) -> str:
    """One line: why a run stopped and exactly what it had written."""
    reason = write_failure(exc) + (f" in {base}" if is_no_space(exc) else "")
    if not run.blobs_written and not tagged:
        return f"migrate stopped: {reason}; no blob and no tag written"
    blobs = f"{run.blobs_written} new blob(s) ({size_text(run.bytes_written)}) written"
    tags = f"{tagged} of {ready} tag(s) written" if tagged else "no tag written"
    return f"migrate stopped: {reason}; {blobs}, {tags}"


def apply_migration(
    plan: MigrationPlan, *, progress: Progress | None = None, overwrite: bool = True
) -> MigrationResult:
    """Write every ready chain of `plan`; a chain whose layers turn out corrupt is skipped.
    `overwrite=False` leaves a tag that names another manifest as it is (status `kept`)."""
    started = time.monotonic()
    reader = _open_v1(Path(plan.source))
    out = open_destination(plan.target)
    store = out.store
    base = store.location
    run = _Run(reader, out, progress)
    migrated: list[MigratedTag] = []
    skipped = [SkippedTag(c.source, c.problem or "") for c in plan.skipped]
    pending: list[tuple[ChainEntry, str, bool]] = []
    with SharedLock(store):
        try:
            for chain in plan.ready:
                outcome = run.convert(chain, plan.oci)
                if isinstance(outcome, SkippedTag):
                    skipped.append(outcome)
                else:
                    pending.append((chain, *outcome))
            out.flush()  # tags last, once every blob and manifest they need is on disk
            for chain, digest, changed in pending:
                moved, previous = run.put_tag(chain.repository, chain.tag, digest, overwrite)
                status = moved or ("written" if changed else "present")
                tag = MigratedTag(
                    chain.source, chain.repository, chain.tag, digest, status, previous
                )
                migrated.append(tag)
            out.flush()
        except (OSError, StorageError) as exc:
            raise OperationalError(
                _stopped(exc, base, run, len(migrated), len(pending)),
                hint=("free some space and run" if is_no_space(exc) else "fix that and run")
                + " migrate again: it reuses what is already written",
            ) from None
    return MigrationResult(
        migrated=tuple(migrated),
        skipped=tuple(skipped),
        repositories=len({m.repository for m in migrated}),
        tags=len(migrated),
        blobs_written=run.blobs_written,
        blobs_present=run.blobs_present,
        bytes_written=run.bytes_written,
        seconds=round(time.monotonic() - started, 3),
        layers_reused=run.layers_reused,
    )
