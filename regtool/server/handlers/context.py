"""What every handler shares: the storage, its writer and reader, options, caches, the lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtool.layout.store import LockTimeout, Store
from regtool.layout.v1.reader import V1Reader
from regtool.layout.v2 import paths
from regtool.layout.v2.reader import V2Reader
from regtool.layout.v2.uploads import UploadSessions
from regtool.layout.v2.writer import V2Writer
from regtool.model.digest import DigestError, parse_digest
from regtool.model.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest
from regtool.model.reference import valid_name, valid_tag
from regtool.server.activity import Activity
from regtool.server.http import ApiError
from regtool.storage.driver import PathNotFound, StorageError, TooLarge

if TYPE_CHECKING:
    from regtool.server.summary import Summaries

LOCK_TIMEOUT = 5.0
MANIFEST_CACHE_BYTES = 64 * 1024 * 1024
V1_HINT = "this is a legacy v1 storage, served read-only; run `regtool migrate` to convert it"


@dataclass(frozen=True, slots=True)
class Options:
    read_only: bool = False
    delete_enabled: bool = True
    lock_timeout: float = LOCK_TIMEOUT
    redirect: bool = False  # blob GETs answer 307 to a presigned URL where the storage has them


def media_type_of(raw: bytes) -> str:
    """The media type to answer a stored manifest with (its own, or inferred from its shape)."""
    try:
        return parse_manifest(raw).media_type
    except ManifestError:
        return "application/octet-stream"


class Context:
    """One storage root served over HTTP (thread-safe: caches are swapped under a lock)."""

    def __init__(self, store: Store, options: Options, activity: Activity | None = None) -> None:
        self.store = store
        # what this server touched lately: its background gc spares it
        self.activity = activity or Activity()
        self.root: Path | None = store.root
        self.layout = store.layout or "v2"
        self.options = options
        self.driver = store.driver
        self.writer = store.writer or V2Writer(self.driver)  # read-only: writes refused first
        self.v2 = (
            store.reader if isinstance(store.reader, V2Reader) else V2Reader(self.driver, self.root)
        )
        self.v1 = store.reader if isinstance(store.reader, V1Reader) else None
        self._mutex = threading.Lock()
        # (repo, tag) -> (mtime of the tag's current link, digest)
        self._tags: dict[tuple[str, str], tuple[float, str]] = {}
        # digest -> (manifest bytes, media type); content-addressed, so never stale
        self._manifests: dict[str, tuple[bytes, str]] = {}
        self._manifest_bytes = 0
        # repo -> (signature of its revisions folder, subject digest -> referrer digests)
        self.referrers_cache: dict[str, tuple[object, dict[str, list[dict[str, Any]]]]] = {}
        # the web page's storage summary, kept up to date in the background (serve starts it)
        self.summaries: Summaries | None = None

    # -- validation ----------------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> str:
        if not valid_name(name):
            raise ApiError("NAME_INVALID", detail={"name": name[:300]})
        return name

    @staticmethod
    def check_digest(text: str, code: str = "DIGEST_INVALID") -> str:
        try:
            return parse_digest(text)
        except DigestError as exc:
            raise ApiError(code, f"invalid digest: {exc}", detail={"digest": text[:200]}) from None

    @staticmethod
    def check_tag(tag: str) -> str:
        if not valid_tag(tag):
            raise ApiError("TAG_INVALID", "invalid tag", detail={"tag": tag[:200]})
        return tag

    # -- reads ---------------------------------------------------------------------------
    # Only a missing path means "unknown"; any other storage error (permissions, I/O)
    # propagates and answers 500, so a client never takes a damaged store for an empty one.
    def present(self, path: str) -> bool:
        try:
            self.driver.stat(path)
        except PathNotFound:
            return False
        return True

    def repository_exists(self, name: str) -> bool:
        """A folder holding `_layers` or `_manifests` (a bare namespace folder is not one)."""
        return self.present(paths.layers_dir(name)) or self.present(paths.manifests_dir(name))

    def blob_linked(self, name: str, digest: str) -> bool:
        return self.present(paths.layer_link(name, digest))

    def has_manifest(self, name: str, digest: str) -> bool:
        return self.present(paths.revision_link(name, digest))

    def tag_digest(self, name: str, tag: str) -> str | None:
        """The digest a tag points to; cached, revalidated by the link file's mtime. Not on
        an object store: its whole-second mtimes miss a tag moved by another instance
        within the second (and one GET costs what the revalidating HEAD would)."""
        link = paths.tag_current_link(name, tag)
        if self.root is None:
            try:
                text = self.driver.get(link).decode("ascii", "replace")
            except PathNotFound:
                return None
            try:
                return parse_digest(text)
            except DigestError:
                return None
        try:
            mtime = self.driver.stat(link).mtime
        except PathNotFound:
            return None
        cached = self._tags.get((name, tag))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            text = self.driver.get(link).decode("ascii", "replace")
        except PathNotFound:
            return None
        try:
            digest = parse_digest(text)
        except DigestError:
            return None  # a malformed link names nothing
        self._tags[(name, tag)] = (mtime, digest)
        return digest

    def manifest(self, digest: str) -> tuple[bytes, str] | None:
        """A stored manifest's bytes and media type (cached), or None when it is missing.

        A link may name any blob: one over the manifest size limit is not read (None).
        """
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        try:
            raw = self.driver.get(paths.blob_data(digest), MAX_MANIFEST_BYTES)
        except (PathNotFound, TooLarge):
            return None
        return self.remember_manifest(digest, raw)

    def remember_manifest(self, digest: str, raw: bytes) -> tuple[bytes, str]:
        entry = (raw, media_type_of(raw))
        with self._mutex:
            if self._manifest_bytes + len(raw) > MANIFEST_CACHE_BYTES:
                self._manifests = {}
                self._manifest_bytes = 0
            if digest not in self._manifests:
                self._manifests[digest] = entry
                self._manifest_bytes += len(raw)
        return entry

    def tag_pushed(self, name: str, tag: str) -> float | None:
        """When the tag was last written (its current link's mtime), None where unknown."""
        if self.layout == "v1":
            return None
        try:
            return self.driver.stat(paths.tag_current_link(name, tag)).mtime
        except (StorageError, OSError):  # a date the page shows: never worth an error
            return None

    def changed(self) -> None:
        """A write committed: the summary is computed again in the background (never now)."""
        if self.summaries is not None:
            self.summaries.changed()

    def forget_tags(self, name: str) -> None:
        with self._mutex:
            self._tags = {k: v for k, v in self._tags.items() if k[0] != name}
            self.referrers_cache.pop(name, None)

    # -- writes --------------------------------------------------------------------------
    @property
    def uploads(self) -> UploadSessions:
        """The storage's upload sessions (callers check writes are allowed first)."""
        if self.store.uploads is None:
            raise ApiError("UNSUPPORTED", "this registry is read-only")
        return self.store.uploads

    def check_writable(self, *, deleting: bool = False) -> None:
        if self.layout == "v1":
            raise ApiError("UNSUPPORTED", V1_HINT)
        if self.options.read_only:
            raise ApiError("UNSUPPORTED", "this registry is read-only")
        if deleting and not self.options.delete_enabled:
            raise ApiError("UNSUPPORTED", "deletes are disabled on this registry")

    @contextmanager
    def writing(self, *, deleting: bool = False) -> Iterator[None]:
        """Check writes are allowed, then hold the storage lock shared around the write."""
        self.check_writable(deleting=deleting)
        try:
            with self.store.lock(exclusive=False, timeout=self.options.lock_timeout):
                yield
        except LockTimeout:
            raise ApiError(
                "UNAVAILABLE",
                "storage is locked by a running gc or rm; retry shortly",
                headers={"Retry-After": "5"},
            ) from None
