"""Blobs held in upload sessions until a whole import checks out, then published at once.

A blob in `blobs/` is public: a registry serving the same storage links it into any
repository whose client pushes the same bytes (HTTP 201 without an upload). So an import
must never delete a blob from there, not even one it wrote itself a moment ago. Instead
every blob is streamed into an upload session of its repository (the Store's
`UploadSessions`: `_uploads/<uuid>/data` on a disk, chunk objects in a bucket; no client
can link either), and only once every layer, config and manifest of the archive has been
read and checked are they committed into `blobs/` without a link (a rename each on a disk;
a server-side copy, or a multipart rewrite past 5 GiB, in a bucket). A failure before
that point cancels the sessions and removes the empty folders the import created: the
storage is left as it was. Blobs published before a later failure are never deleted: no
tag of this import names them, so gc frees them once its grace window has passed.

Also here: `Tidying`, a driver wrapper whose failed writes (a full disk) leave no empty
folder, and `write_tag`, which never leaves a new tag half-written.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from regtool.layout.v2 import paths
from regtool.layout.v2.uploads import FilesystemUploads, UploadSessions
from regtool.layout.v2.writer import V2Writer
from regtool.model.digest import is_digest
from regtool.ops import layerio
from regtool.storage.driver import Entry, FileInfo, PathNotFound, StorageDriver, StorageError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """A write that failed because the disk (or the user's quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE
    if isinstance(exc, StorageError):
        return "No space left" in exc.message or "quota exceeded" in exc.message.lower()
    return False


def write_failure(exc: BaseException) -> str:
    """One line for an error met while writing the storage."""
    if is_no_space(exc):
        return "no space left on device"
    if isinstance(exc, StorageError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def size_text(size: int) -> str:
    """`3.1 MiB`: sizes in messages, as the tables show them."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def current_tag(writer: V2Writer, repo: str, tag: str) -> str | None:
    """The digest `repo:tag` names now (None: no such tag, or an unreadable link)."""
    try:
        text = writer.driver.get(paths.tag_current_link(repo, tag), 1024).decode()
    except (PathNotFound, UnicodeDecodeError):
        return None
    return text if is_digest(text) else None


def write_tag(writer: V2Writer, repo: str, tag: str, digest: str, *, new: bool) -> None:
    """Point `tag` at `digest`; a new tag whose writing fails halfway (an index link but no
    current link) is removed again, so no tag is ever left half-written."""
    try:
        writer.tag(repo, tag, digest)
    except BaseException:
        if new:
            try:
                writer.untag(repo, tag)
            except (OSError, StorageError):
                pass
            remove_empty_folders(writer.driver, paths.tags_dir(repo), paths.repository(repo))
        raise


def remove_empty_folders(driver: StorageDriver, folder: str, stop: str) -> None:
    """Remove `folder` and its parents below `stop` while they are empty (filesystems)."""
    tidy = getattr(driver, "remove_empty_parents", None)
    if tidy is not None:
        try:
            tidy(folder, stop)
        except (OSError, StorageError):
            pass


@dataclass(frozen=True, slots=True)
class StagedBlob:
    repo: str
    upload_id: str
    digest: str
    size: int


class Stage:
    """Upload sessions of one import; `publish()` moves them into the blob store.

    Sessions go through `uploads` (the Store's; by default the disk's own sessions over
    `writer`, so a `Tidying` writer tidies their failed writes too). `folders`: the storage
    has folders this import may create and must remove again when it fails (not a bucket).
    """

    def __init__(
        self, writer: V2Writer, uploads: UploadSessions | None = None, *, folders: bool = True
    ) -> None:
        self.writer = writer
        self.driver = writer.driver
        self.uploads = uploads if uploads is not None else FilesystemUploads(writer, fsync=False)
        self.folders = folders
        self.staged: dict[str, StagedBlob] = {}
        self.published: list[StagedBlob] = []
        self._created: list[str] = []  # folders this import made, parents first
        self._noted: set[str] = set()
        self._existing: set[str] = set()

    def has(self, digest: str) -> bool:
        """True when the storage holds the blob or this import has staged it."""
        return digest in self.staged or self.writer.has_blob(digest)

    def put(self, repo: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Stream bytes into a new upload session of `repo`; returns (digest, size).

        Bytes already in the storage or staged before are not kept twice. Any exception
        raised by `chunks` (a digest check, a corrupt stream) or by the storage cancels the
        session before it propagates.
        """
        self._note(paths.uploads_dir(repo))
        hasher = layerio.Hasher()
        upload_id = self.uploads.start(repo)  # failing, it leaves no session
        try:
            self.uploads.append(repo, upload_id, 0, hasher.tap(chunks), last=True)
        except BaseException:
            self._cancel(repo, upload_id)
            raise
        digest = hasher.digest
        if self.has(digest):
            self._cancel(repo, upload_id)
        else:
            self.staged[digest] = StagedBlob(repo, upload_id, digest, hasher.size)
        return digest, hasher.size

    def publish(self, keep: set[str] | None = None) -> None:
        """Move every staged blob (only those in `keep` when given: the rest is discarded)
        into `blobs/` (unless the storage got it meanwhile); no link is written (the caller
        links what its manifests name)."""
        for digest in list(self.staged):
            if keep is not None and digest not in keep:
                continue
            blob = self.staged[digest]
            if not self.writer.has_blob(digest):
                self._note(paths.blob_dir(digest))
                self.uploads.commit(blob.repo, blob.upload_id, digest, blob.size, link=False)
                self.published.append(blob)
            del self.staged[digest]
            self._cancel(blob.repo, blob.upload_id)

    def discard(self) -> None:
        """Cancel what is still staged and remove the empty folders this import created.

        Published blobs stay: another repository may link them by now."""
        for blob in self.staged.values():
            self._cancel(blob.repo, blob.upload_id)
        self.staged.clear()
        for folder in reversed(self._created):  # each one alone, when empty
            remove_empty_folders(self.driver, folder, folder.rpartition("/")[0])

    @property
    def published_bytes(self) -> int:
        return sum(b.size for b in self.published)

    def _note(self, folder: str) -> None:
        """Remember which folders on the way to `folder` do not exist yet."""
        if not self.folders or folder in self._noted:
            return
        self._noted.add(folder)
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._existing or prefix in self._created:
                continue
            if self.driver.exists(prefix):
                self._existing.add(prefix)
            else:
                self._created.append(prefix)

    def _cancel(self, repo: str, upload_id: str) -> None:
        try:
            self.uploads.cancel(repo, upload_id)
        except (OSError, StorageError):
            pass  # a leftover session is stale for gc, never visible as a blob


class Tidying:
    """A driver whose failed writes leave no empty folder behind.

    The filesystem driver removes its temp file when a write fails (a full disk, say), but
    the folders it made for the object stay, empty: a link folder without its link, a blob
    folder without `data`. This wrapper removes those (only empty ones, up to the v2 root)
    and re-raises. Everything else is passed through."""

    def __init__(self, driver: StorageDriver) -> None:
        self.inner = driver
        self.forks = driver.forks
        self.scanner = driver.scanner

    def __getattr__(self, name: str) -> object:  # root, full, ...
        return getattr(self.inner, name)

    def _tidy(self, path: str) -> None:
        folder = path.rpartition("/")[0]
        while folder.startswith(paths.V2 + "/") and not self.inner.exists(folder):
            folder = folder.rpartition("/")[0]  # the makedirs that failed went this far
        remove_empty_folders(self.inner, folder, paths.V2)

    def put(self, path: str, data: bytes) -> None:
        try:
            self.inner.put(path, data)
        except BaseException:
            self._tidy(path)
            raise

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        try:
            return self.inner.put_stream(path, chunks)
        except BaseException:
            self._tidy(path)
            raise

    def move(self, src: str, dst: str) -> None:
        try:
            self.inner.move(src, dst)
        except BaseException:
            self._tidy(dst)
            raise

    def open_append(self, path: str) -> BinaryIO:
        return self.inner.open_append(path)

    def get(self, path: str, limit: int | None = None) -> bytes:
        return self.inner.get(path, limit)

    def hold(self, path: str) -> AbstractContextManager[None]:
        return self.inner.hold(path)

    def remove_empty_parents(self, path: str, stop: str) -> None:
        self.inner.remove_empty_parents(path, stop)

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        return self.inner.open(path, offset)

    def stat(self, path: str) -> FileInfo:
        return self.inner.stat(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def list(self, prefix: str) -> list[Entry]:
        return self.inner.list(prefix)

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        return self.inner.walk(prefix)

    def delete(self, path: str) -> None:
        self.inner.delete(path)
