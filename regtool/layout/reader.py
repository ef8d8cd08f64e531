"""The one read interface both layouts offer, and the plain results it returns.

Operations (`ops/`) are written against `RegistryReader` only, so `ls`, `layers`, `verify`
and the rest run unchanged on a distribution v2 tree and on a legacy v1 tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from regtool.storage.driver import StorageDriver

Layout = Literal["v1", "v2"]


@dataclass(frozen=True, slots=True)
class Issue:
    """Something wrong met while reading: the path (relative to the root) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored object an image needs: v2 blob digest, or v1 image id (its `layer` file)."""

    id: str
    size: int


@dataclass(frozen=True, slots=True)
class Layer:
    id: str
    size: int
    media_type: str | None = None
    diff_id: str | None = None
    created_by: str | None = None
    created: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """One runnable image: a single-platform manifest, an index child, or a v1 chain."""

    digest: str
    media_type: str
    platform: str | None
    config: Blob | None
    layers: tuple[Layer, ...]
    created: str | None = None
    artifact_type: str | None = None

    def blobs(self) -> tuple[Blob, ...]:
        head = (self.config,) if self.config is not None else ()
        return head + tuple(Blob(layer.id, layer.size) for layer in self.layers)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a tag or digest points to: one image, or an index with one image per platform."""

    digest: str
    media_type: str
    is_index: bool
    images: tuple[Image, ...]
    issues: tuple[Issue, ...] = ()
    subject: str | None = None

    @property
    def platforms(self) -> tuple[str, ...]:
        if not self.is_index:
            return ()
        return tuple(image.platform or "unknown" for image in self.images)

    @property
    def created(self) -> str | None:
        stamps = [image.created for image in self.images if image.created]
        return max(stamps) if stamps else None

    def blobs(self) -> dict[str, int]:
        """Distinct blobs this needs (configs and layers of every image), with sizes."""
        needed: dict[str, int] = {}
        for image in self.images:
            for blob in image.blobs():
                needed[blob.id] = blob.size
        return needed


@dataclass(frozen=True, slots=True)
class Repository:
    name: str
    issues: tuple[Issue, ...] = ()


@dataclass(frozen=True, slots=True)
class TagLink:
    """A tag and the digest (v2) or image id (v1) it names; `digest` is None when unreadable.

    `pushed` (asked for with `tags(..., pushed=True)`) is when the tag was last pushed: the
    modification time of its link `path` (v2: `_manifests/tags/<t>/current/link`; v1: the
    `tag_<t>` file; on an object store, the object's LastModified). None when not asked or
    not known.
    """

    repository: str
    tag: str
    digest: str | None
    path: str
    issue: Issue | None = None
    pushed: float | None = None


class RegistryReader(Protocol):
    """Read access to a registry storage, whatever its layout."""

    layout: Layout
    root: Path | None  # the local folder; None on an object store
    driver: StorageDriver

    def repositories(self) -> list[Repository]:
        """Every repository, sorted by stored name (links are never followed)."""
        ...

    def foreign_objects(self) -> tuple[Issue, ...]:
        """Links and special files met so far where the layout has folders or files."""
        ...

    def tags(self, repository: str, *, pushed: bool = False) -> list[TagLink]:
        """The tags of one repository, sorted by name; with `pushed`, each with its push
        time (one more stat per tag)."""
        ...

    def resolve(self, repository: str, digest: str, *, detail: bool = True) -> Resolved:
        """Read what `digest` (a v1 image id on v1) is; problems become issues, not errors.

        With detail=False, layers carry only id, size and media type (enough for sizes).
        """
        ...

    def prefetch(self) -> None:
        """Called before a scan resolves every tag: fetch ahead in bulk what it will read,
        where the storage makes that pay (an object store); otherwise nothing."""
        ...

    def windows(
        self, *, configs: bool = False
    ) -> Iterator[tuple[list[Repository], RegistryReader]] | None:
        """On an object store: the repositories a window at a time, each with a reader
        holding just their objects (and with `configs`, their images' configs), so a scan
        of everything never holds the whole listing. None where it would not pay."""
        ...

    def has_manifest(self, repository: str, digest: str) -> bool:
        """Whether `digest` is a manifest (v1: an image) this repository can serve."""
        ...
