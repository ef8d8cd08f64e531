"""Upload sessions kept in an object store, so that any `serve` instance on the bucket
continues any session.

    _uploads/<uuid>/startedat                as registry 2.8.2 writes it
    _uploads/<uuid>/chunks/<20-digit offset>  one object per PATCH (or PUT) body

The session's size is the sum of its chunks (one flat listing of the session). A body is
stored create-only (If-None-Match: *): of two requests writing at the same offset, on any
instances, one wins and the other is refused (ObjectBusy, the server's 409), so chunks
never overlap. Bodies are streamed: one PUT, or a multipart upload of `chunksize` parts
completed only once the whole body arrived (a client that goes away leaves nothing, and
the session resumes where it was).

The commit (PUT) checks the digest before anything appears under `blobs/`: a session of
one chunk is hashed (or its running hash used) and then copied server-side to the blob;
several chunks are read in order and written to the blob by one multipart upload whose
completion waits for the digest check (a wrong digest aborts it: no blob, no link).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from regtool.layout.v2 import paths
from regtool.layout.v2.uploads import (
    HashWorker,
    RunningHashes,
    digest_of,
    hashed,
    read_object,
)
from regtool.layout.v2.writer import DigestMismatch, UploadChanged, V2Writer, startedat_now
from regtool.model.digest import split_digest
from regtool.storage.driver import (
    ObjectBusy,
    ObjectExists,
    PathNotFound,
    StorageDriver,
)

COPY_LIMIT = 5 * 1024**3  # S3 CopyObject copies objects up to 5 GiB


class ObjectStore(StorageDriver, Protocol):
    """What sessions need from an object store beyond a plain driver."""

    def put_stream(self, path: str, chunks: Iterable[bytes], *, create: bool = False) -> int: ...

    def copy(self, src: str, dst: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int
    size: int
    key: str


@dataclass(frozen=True, slots=True)
class Session:
    started: bool
    chunks: tuple[Chunk, ...]  # by offset

    @property
    def size(self) -> int:
        return sum(chunk.size for chunk in self.chunks)

    def contiguous(self) -> bool:
        end = 0
        for chunk in self.chunks:
            if chunk.offset != end:
                return False
            end += chunk.size
        return True


class ObjectStoreUploads:
    """Sessions in a bucket (see the module docstring)."""

    def __init__(self, writer: V2Writer, driver: ObjectStore) -> None:
        self.writer = writer
        self.driver = driver
        self.hashes = RunningHashes()
        self._held: set[str] = set()  # sessions a request of this process is using
        self._lock = threading.Lock()

    def start(self, repo: str) -> str:
        upload_id = str(uuid.uuid4())
        self.driver.put(paths.upload_startedat(repo, upload_id), startedat_now())
        self.hashes.new(upload_id)
        return upload_id

    def session(self, repo: str, upload_id: str) -> Session:
        """The session as stored: one listing of its keys."""
        folder = paths.upload_dir(repo, upload_id)
        chunks_dir = paths.upload_chunks_dir(repo, upload_id)
        started = False
        chunks = []
        for info in self.driver.walk(folder):
            parent, _, name = info.path.rpartition("/")
            if info.path == paths.upload_startedat(repo, upload_id):
                started = True
            elif parent == chunks_dir:
                offset = paths.chunk_offset(name)
                if offset is not None:
                    chunks.append(Chunk(offset, info.size, info.path))
        chunks.sort(key=lambda chunk: chunk.offset)
        return Session(started, tuple(chunks))

    def size(self, repo: str, upload_id: str) -> int:
        session = self.session(repo, upload_id)
        if not session.started:
            raise PathNotFound(paths.upload_startedat(repo, upload_id))
        return session.size

    @contextmanager
    def hold(self, repo: str, upload_id: str) -> Iterator[int]:
        """Excludes requests of this process; across instances, the create-only chunk
        writes keep the session consistent."""
        with self._lock:
            if upload_id in self._held:
                raise ObjectBusy(paths.upload_dir(repo, upload_id))
            self._held.add(upload_id)
        try:
            yield self.size(repo, upload_id)
        finally:
            with self._lock:
                self._held.discard(upload_id)

    def append(
        self, repo: str, upload_id: str, size: int, chunks: Iterable[bytes], *, last: bool
    ) -> int:
        body = iter(chunks)
        first = next((piece for piece in body if piece), None)
        if first is None:
            return size  # an empty body stores nothing
        key = paths.upload_chunk(repo, upload_id, size)
        hasher = self.hashes.take(upload_id, size)
        copy = hasher.copy() if hasher is not None else None
        worker = HashWorker(copy) if copy is not None else None
        try:
            written = self.driver.put_stream(
                key, hashed(itertools.chain((first,), body), worker), create=True
            )
        except BaseException as exc:
            if hasher is not None:  # nothing was stored: the old state still holds
                self.hashes.put(upload_id, size, hasher)
            if isinstance(exc, ObjectExists):
                raise ObjectBusy(paths.upload_dir(repo, upload_id)) from None
            raise
        finally:
            if worker is not None:
                worker.close()
        if copy is not None:
            self.hashes.put(upload_id, size + written, copy)
        return size + written

    def commit(
        self, repo: str, upload_id: str, digest: str, size: int, *, link: bool = True
    ) -> None:
        session = self.session(repo, upload_id)
        where = paths.upload_dir(repo, upload_id)
        if not session.started:
            raise PathNotFound(paths.upload_startedat(repo, upload_id))
        if not session.contiguous() or session.size != size:
            raise UploadChanged(where, f"holds {session.size} bytes in order, {size} expected")
        algorithm = split_digest(digest)[0]
        known = self.hashes.digest(upload_id, size, algorithm)
        present = self.writer.has_blob(digest)
        single = len(session.chunks) <= 1 and size <= COPY_LIMIT
        if known is None and (present or single):
            known, _ = digest_of(self._read(session), algorithm)
        if known is not None and known != digest:
            raise DigestMismatch(digest, known)
        if not present:
            blob = paths.blob_data(digest)
            if not session.chunks:
                self.driver.put(blob, b"")
            elif single:
                self.driver.copy(session.chunks[0].key, blob)
            else:  # completed only once the bytes read back hash to `digest`
                self.writer.put_blob_stream(digest, self._read(session))
        if link:
            self.writer.link_blob(repo, digest)
        self.cancel(repo, upload_id)

    def _read(self, session: Session) -> Iterator[bytes]:
        for chunk in session.chunks:
            yield from read_object(self.driver, chunk.key)

    def cancel(self, repo: str, upload_id: str) -> None:
        self.driver.delete(paths.upload_dir(repo, upload_id))
        self.hashes.forget(upload_id)
