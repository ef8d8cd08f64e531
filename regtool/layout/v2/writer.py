"""Write distribution's v2 layout exactly as registry 2.8.2 does (byte-compatible trees).

Blobs are ingested through `_uploads/<uuid>/data` (streamed, hashed on the way), then moved
to `blobs/.../data`; links hold the bare digest with no newline; manifest writes follow the
registry's order: blob, revision link, tag index link, tag current link. Every write is
atomic (the driver's temp file + rename).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime
from typing import BinaryIO

from regtool.layout.v2 import paths
from regtool.model.digest import split_digest
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError


class DigestMismatch(ValueError):
    """Uploaded bytes whose digest is not the one the client named."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UploadChanged(StorageError):
    """An upload's data is not the size that was hashed: something else wrote to it."""


def startedat_now() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


class V2Writer:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    # -- blobs ---------------------------------------------------------------------------
    def blob_size(self, digest: str) -> int | None:
        try:
            return self.driver.stat(paths.blob_data(digest)).size
        except PathNotFound:
            return None

    def has_blob(self, digest: str) -> bool:
        return self.driver.exists(paths.blob_data(digest))

    def start_upload(self, repo: str) -> str:
        """Open an upload session (`_uploads/<uuid>/{startedat,data}`); returns its id."""
        upload_id = str(uuid.uuid4())
        try:
            self.driver.put(paths.upload_startedat(repo, upload_id), startedat_now())
            self.driver.put(paths.upload_data(repo, upload_id), b"")
        except BaseException:
            with suppress(StorageError):
                self.cancel_upload(repo, upload_id)
            raise
        return upload_id

    def hold_upload(self, repo: str, upload_id: str) -> AbstractContextManager[None]:
        """Exclusive use of a session (one request at a time, across processes where the
        storage allows); ObjectBusy when another request has it, PathNotFound if it is gone."""
        return self.driver.hold(paths.upload_startedat(repo, upload_id))

    def append_upload(self, repo: str, upload_id: str) -> BinaryIO:
        """The session's `data` opened for appending the next chunk (the caller closes it)."""
        return self.driver.open_append(paths.upload_data(repo, upload_id))

    def cancel_upload(self, repo: str, upload_id: str) -> None:
        self.driver.delete(paths.upload_dir(repo, upload_id))

    def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: str,
        hashed: int | None = None,
        *,
        link: bool = True,
    ) -> int:
        """Move a finished upload's data to its blob path (unless present), link it (unless
        `link` is False), clean up.

        `hashed` is the byte count the caller's digest covers: the data must have exactly
        that size before the move and after it, else nothing is linked (UploadChanged)."""
        data = paths.upload_data(repo, upload_id)
        size = self.driver.stat(data).size
        _check_size(data, size, hashed)
        blob = paths.blob_data(digest)
        if not self.has_blob(digest):
            self.driver.move(data, blob)
            moved = self.driver.stat(blob).size
            if hashed is not None and moved != hashed:
                self.driver.move(blob, data)  # never leave bytes under a digest they lack
                _check_size(blob, moved, hashed)
        if link:
            self.link_blob(repo, digest)
        self.cancel_upload(repo, upload_id)
        return size

    def ingest(self, repo: str, chunks: Iterable[bytes], expected: str | None = None) -> str:
        """Stream bytes into a new blob of `repo`, hashing as they come; returns the digest.

        On a digest mismatch nothing is left behind and DigestMismatch is raised.
        """
        algorithm = split_digest(expected)[0] if expected else "sha256"
        hasher = hashlib.new(algorithm)
        sha256 = hasher if algorithm == "sha256" else hashlib.sha256()

        def hashed() -> Iterable[bytes]:
            for chunk in chunks:
                hasher.update(chunk)
                if sha256 is not hasher:
                    sha256.update(chunk)
                yield chunk

        upload_id = str(uuid.uuid4())
        self.driver.put(paths.upload_startedat(repo, upload_id), startedat_now())
        try:
            written = self.driver.put_stream(paths.upload_data(repo, upload_id), hashed())
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if expected and actual != expected:
                raise DigestMismatch(expected, actual)
            canonical = f"sha256:{sha256.hexdigest()}"
            self.commit_upload(repo, upload_id, canonical, written)
            if expected and expected != canonical:
                self.driver.put(paths.layer_link(repo, expected), canonical.encode())
            return canonical
        except BaseException:
            self.cancel_upload(repo, upload_id)
            raise

    def put_blob(self, repo: str, data: bytes) -> str:
        """A small blob (config, manifest) written whole, then linked into `repo`."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            self.driver.put(paths.blob_data(digest), data)
        self.link_blob(repo, digest)
        return digest

    def put_blob_stream(self, digest: str, chunks: Iterable[bytes]) -> int:
        """Stream a blob whose digest is known in advance straight to its final path.

        The driver writes a temp file and renames it, so a reader never sees partial data;
        if the bytes hash to something else, DigestMismatch is raised and nothing is left.
        No upload folder and no link: for bulk writers (migrate) that link afterwards.
        """
        algorithm = split_digest(digest)[0]
        hasher = hashlib.new(algorithm)

        def checked() -> Iterable[bytes]:
            for chunk in chunks:
                hasher.update(chunk)
                yield chunk
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(digest, actual)

        return self.driver.put_stream(paths.blob_data(digest), checked())

    def link_blob(self, repo: str, digest: str) -> None:
        self.driver.put(paths.layer_link(repo, digest), digest.encode())

    def unlink_blob(self, repo: str, digest: str) -> None:
        """What 2.8.2's blob DELETE does: drop the repository's link; the data stays for gc."""
        self.driver.delete(paths.layer_link(repo, digest))

    # -- manifests and tags --------------------------------------------------------------
    def put_manifest(self, repo: str, raw: bytes, tag: str | None = None) -> str:
        """Store manifest bytes as given, link the revision, then point `tag` at it."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if not self.has_blob(digest):
            self.driver.put(paths.blob_data(digest), raw)
        self.driver.put(paths.revision_link(repo, digest), digest.encode())
        if tag is not None:
            self.tag(repo, tag, digest)
        return digest

    def link_manifest(self, repo: str, digest: str) -> None:
        """Link a stored manifest blob into `repo` (its revision link), as a push does."""
        self.driver.put(paths.revision_link(repo, digest), digest.encode())

    def tag(self, repo: str, tag: str, digest: str) -> None:
        """Index link, then current link; if a new tag cannot be completed (a full disk),
        what it wrote goes again, so no tag folder without a current link is left."""
        index = paths.tag_index_link(repo, tag, digest)
        current = paths.tag_current_link(repo, tag)
        new = not self.driver.exists(current)
        try:
            self.driver.put(index, digest.encode())
            self.driver.put(current, digest.encode())
        except BaseException:
            if new:
                with suppress(StorageError, OSError):
                    self.driver.delete(index)
                stop = paths.tags_dir(repo)
                self.driver.remove_empty_parents(index.rpartition("/")[0], stop)
                self.driver.remove_empty_parents(current.rpartition("/")[0], stop)
            raise

    def untag(self, repo: str, tag: str) -> None:
        """Remove a tag only (what distribution 3.x's tag DELETE does)."""
        self.driver.delete(paths.tag_dir(repo, tag))

    def delete_manifest(self, repo: str, digest: str, tags: Iterable[str]) -> None:
        """What 2.8.2's manifest DELETE does: drop the revision link, then every tag in
        `tags` (the caller passes the tags whose current link is this digest)."""
        self.driver.delete(paths.revision_link(repo, digest))
        for tag in tags:
            self.driver.delete(paths.tag_dir(repo, tag))


def _check_size(path: str, size: int, hashed: int | None) -> None:
    if hashed is not None and size != hashed:
        raise UploadChanged(path, f"holds {size} bytes, {hashed} were hashed")
