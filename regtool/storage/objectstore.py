"""S3-compatible object store driver (obstore): keys below `rootdirectory` in one bucket.

obstore is an optional dependency (the `s3` extra): it is imported inside functions only,
so regtool imports without it; making a driver without it raises StorageError.
"""

from __future__ import annotations

import builtins
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from regtool.storage import meter
from regtool.storage.driver import (
    Entry,
    FileInfo,
    InvalidPath,
    Multipart,
    ObjectExists,
    PathNotFound,
    StorageError,
    TooLarge,
)
from regtool.storage.s3config import (
    S3Settings,
    make_boto3_client,
    make_store,
    put_attributes,
    status_of,
    translate,
)
from regtool.storage.scan import Scan

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["ObjectStoreDriver", "S3Settings"]

READ_RANGE = 8 * 1024 * 1024  # one ranged GET of open()'s reader
IN_FLIGHT = 32  # concurrent GETs of get_many
LIST_PAGE = 1000  # S3's page size
UNSUPPORTED = "not supported on object storage yet"


class ObjectStoreDriver:
    """Bytes in an S3 bucket. With `readonly=True` every write raises."""

    forks = False  # a client runtime with threads and connections: not in a forked child

    def __init__(self, settings: S3Settings, *, readonly: bool = True) -> None:
        self.settings = settings
        self.readonly = readonly
        self._attributes = put_attributes(settings)
        self.store = make_store(settings, timeout="10min")
        self._check_store = make_store(settings, timeout="5s", retries=1)
        self._boto: Any = None

    def scanner(self) -> Scan:
        return Scan(self)

    # -- keys and errors -------------------------------------------------------------------
    def _key(self, path: str) -> str:
        """The key of `path` below the store's prefix; refuses keys that could escape it."""
        if not path:
            return path
        if path[0] == "/" or path[-1] == "/" or "//" in path or "\\" in path or "\0" in path:
            raise InvalidPath(path, "keys are relative and slash-separated, without empty parts")
        if "." in path and ("/." in path or path[0] == "."):
            for part in path.split("/"):
                if part in (".", ".."):
                    raise InvalidPath(path, "'.' or '..' component")
        return path

    def _error(self, path: str, exc: Exception) -> StorageError:
        return translate(self.settings, path, exc)

    # -- checks ----------------------------------------------------------------------------
    def check(self) -> None:
        """One listing request: the bucket exists, the keys are accepted, the endpoint answers."""
        import obstore

        try:
            next(iter(obstore.list(self._check_store, None, chunk_size=1)), None)
        except Exception as exc:
            raise self._error(self.settings.location(), exc) from None

    # -- reads -----------------------------------------------------------------------------
    def get(self, path: str, limit: int | None = None) -> bytes:
        import obstore

        key = self._key(path)
        meter.files(1)
        try:
            if limit is None:
                return bytes(obstore.get(self.store, key).bytes())
            result = obstore.get(self.store, key, options={"range": (0, limit + 1)})
            if result.meta["size"] > limit:
                raise TooLarge(path, limit)  # the body (limit+1 bytes at most) is dropped
            return bytes(result.bytes())
        except StorageError:
            raise
        except Exception as exc:
            error = self._error(path, exc)
            if limit is not None and status_of(exc) == 416:  # an empty object has no range
                return self.get(path)
            raise error from None

    def get_many(
        self, paths: Iterable[str], limit: int | None = None
    ) -> dict[str, bytes | StorageError]:
        """The bytes (or the error) of each path, read with up to IN_FLIGHT GETs at once.

        Blocking GETs on a thread pool, not obstore's async API: its runtime could call back
        into an interpreter that was shutting down (an abort at exit, 1 run in 6 here), and
        threads were measured as fast on 2,000 small GETs."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            return {}

        def one(path: str) -> bytes | StorageError:
            try:
                return self.get(path, limit)
            except StorageError as exc:
                return exc

        workers = min(IN_FLIGHT, len(wanted))
        with ThreadPoolExecutor(workers, thread_name_prefix="regtool-get") as pool:
            return dict(zip(wanted, pool.map(one, wanted), strict=True))

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        """A buffered reader over ranged GETs of READ_RANGE bytes, pinned to the object's
        ETag (a replaced object fails the next read instead of mixing versions)."""
        import obstore

        key = self._key(path)
        try:
            meta = obstore.head(self.store, key)
        except Exception as exc:
            raise self._error(path, exc) from None
        raw = _RangeReader(self, path, key, meta["size"], meta["e_tag"])
        reader = io.BufferedReader(raw, buffer_size=READ_RANGE)
        if offset:
            reader.seek(offset)
        return cast(BinaryIO, reader)

    def stat(self, path: str) -> FileInfo:
        import obstore

        key = self._key(path)
        if key:
            try:
                meta = obstore.head(self.store, key)
                return FileInfo(path, meta["size"], meta["last_modified"].timestamp(), False)
            except FileNotFoundError:
                pass
            except Exception as exc:
                raise self._error(path, exc) from None
        if key and not self._has_keys_below(path, key):
            raise PathNotFound(path)
        return FileInfo(path, 0, 0.0, True)  # a "folder": at least one key below it

    def _has_keys_below(self, path: str, key: str) -> bool:
        import obstore

        try:
            return any(next(iter(obstore.list(self.store, key, chunk_size=1)), ()))
        except Exception as exc:
            raise self._error(path, exc) from None

    def exists(self, path: str) -> bool:
        """An object at `path`, or keys below it (a folder). Errors other than "not found"
        (access denied, unreachable) raise: they say nothing about the key."""
        try:
            self.stat(path)
        except PathNotFound:
            return False
        return True

    def list(self, prefix: str) -> list[Entry]:
        import obstore

        key = self._key(prefix)
        try:
            found = obstore.list_with_delimiter(self.store, key or None)
        except Exception as exc:
            raise self._error(prefix, exc) from None
        entries = [Entry(p.rpartition("/")[2], True) for p in found["common_prefixes"]]
        entries += [Entry(o["path"].rpartition("/")[2], False) for o in found["objects"]]
        entries.sort(key=lambda e: e.name)
        meter.files(len(entries))
        return entries

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        """Every object below `prefix`, in key order, page by page as they arrive."""
        import obstore

        key = self._key(prefix)
        stream = obstore.list(self.store, key or None, chunk_size=LIST_PAGE)
        while True:
            try:
                page = next(stream)
            except StopIteration:
                return
            except Exception as exc:
                raise self._error(prefix, exc) from None
            meter.files(len(page))
            for meta in page:
                yield FileInfo(
                    meta["path"],
                    meta["size"],
                    meta["last_modified"].timestamp(),
                    False,
                    md5=self._md5(meta.get("e_tag")),
                )

    def _md5(self, etag: str | None) -> str | None:
        """The MD5 an ETag is, when it is one: one PUT, not encrypted with a KMS key."""
        if etag is None or self.settings.keyid is not None:
            return None
        etag = etag.strip('"')
        return etag if len(etag) == 32 and not etag.strip("0123456789abcdef") else None

    # -- multipart uploads left behind (obstore has no call for them: boto3) ----------------
    def multipart_uploads(self, prefix: str) -> builtins.list[Multipart]:
        """Every unfinished multipart upload below `prefix`, with the bytes of its parts."""
        client = self._multipart_client()
        root = self.settings.prefix
        full = f"{root}/{self._key(prefix)}" if root else self._key(prefix)
        found: builtins.list[Multipart] = []
        try:
            pages = client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.settings.bucket, Prefix=full + "/"
            )
            for page in pages:
                for upload in page.get("Uploads", ()):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    size = self._parts_size(client, key, upload_id)
                    if size is None:
                        continue  # finished or aborted meanwhile
                    relative = key[len(root) + 1 :] if root else key
                    found.append(
                        Multipart(relative, upload_id, upload["Initiated"].timestamp(), size)
                    )
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(prefix, exc) from None
        return found

    def _parts_size(self, client: Any, key: str, upload_id: str) -> int | None:
        try:
            pages = client.get_paginator("list_parts").paginate(
                Bucket=self.settings.bucket, Key=key, UploadId=upload_id
            )
            return sum(part["Size"] for page in pages for part in page.get("Parts", ()))
        except Exception as exc:
            if status_of(exc) == 404 or "NoSuch" in str(exc):
                return None
            raise

    def abort_multipart(self, path: str, upload_id: str) -> None:
        """Abort one multipart upload (its parts are freed); a finished one is no error."""
        key = self._writable(path)
        root = self.settings.prefix
        try:
            self._multipart_client().abort_multipart_upload(
                Bucket=self.settings.bucket,
                Key=f"{root}/{key}" if root else key,
                UploadId=upload_id,
            )
        except Exception as exc:
            if status_of(exc) == 404 or "NoSuchUpload" in str(exc):
                return
            raise self._error(path, exc) from None

    def _multipart_client(self) -> Any:
        if self._boto is None:
            self._boto = make_boto3_client(self.settings)
        return self._boto

    # -- writes ----------------------------------------------------------------------------
    def _writable(self, path: str) -> str:
        if self.readonly:
            raise StorageError(path, "driver is read-only")
        if not path:
            raise InvalidPath(path, "an empty key names the whole storage")
        return self._key(path)

    def put(self, path: str, data: bytes, *, create: bool = False) -> None:
        """Write one object in one PUT; with `create`, only if no object is there yet
        (If-None-Match: *), else ObjectExists."""
        import obstore

        key = self._writable(path)
        try:
            obstore.put(
                self.store,
                key,
                data,
                use_multipart=False,
                attributes=self._attributes,
                mode="create" if create else None,
            )
        except Exception as exc:
            raise self._put_error(path, exc) from None

    def _put_error(self, path: str, exc: Exception) -> StorageError:
        if type(exc).__name__ == "AlreadyExistsError" or status_of(exc) == 412:
            return ObjectExists(path)
        return self._error(path, exc)

    def put_stream(self, path: str, chunks: Iterable[bytes], *, create: bool = False) -> int:
        """One PUT when the stream fits in one part, a multipart upload of `chunksize`
        parts otherwise (completed only at the end: readers never see a partial object;
        an interrupted upload is aborted). With `create` the object is written only if
        none is there when it completes (If-None-Match: *), else ObjectExists."""
        import obstore

        key = self._writable(path)
        part = self.settings.chunksize
        source = iter(chunks)
        head: list[bytes] = []
        written = 0
        for chunk in source:
            head.append(chunk)
            written += len(chunk)
            if written > part:
                break
        else:
            self.put(path, b"".join(head), create=create)
            return written
        total = [written]
        failed: list[BaseException] = []

        def rest() -> Iterator[bytes]:
            yield from head
            try:
                for chunk in source:
                    total[0] += len(chunk)
                    yield chunk
            except BaseException as exc:
                failed.append(exc)
                raise

        try:
            obstore.put(
                self.store,
                key,
                rest(),
                use_multipart=True,
                chunk_size=part,
                max_concurrency=4,
                attributes=self._attributes,
                mode="create" if create else None,
            )
        except Exception as exc:
            if failed:
                raise failed[0] from None  # the caller's own error, as raised
            raise self._put_error(path, exc) from None
        return total[0]

    def delete(self, path: str) -> None:
        """The object at `path` and every key below it, in batches of up to 1000 keys."""
        import obstore

        key = self._writable(path)
        try:
            stream = obstore.list(self.store, key, chunk_size=LIST_PAGE)
            for page in stream:
                obstore.delete(self.store, [meta["path"] for meta in page])
                meter.files(len(page))
            obstore.delete(self.store, key)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(path, exc) from None

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy of one object (S3 CopyObject: objects up to 5 GiB)."""
        import obstore

        key_src = self._writable(src)
        key_dst = self._writable(dst)
        try:
            obstore.copy(self.store, key_src, key_dst)
        except FileNotFoundError:
            raise PathNotFound(src) from None
        except Exception as exc:
            raise self._error(src, exc) from None

    def sign(self, path: str, seconds: int) -> str:
        """A presigned GET URL of `path`, valid for `seconds` (computed locally, no request)."""
        import obstore

        key = self._key(path)
        try:
            return obstore.sign(self.store, "GET", key, timedelta(seconds=seconds))
        except Exception as exc:
            raise self._error(path, exc) from None

    def move(self, src: str, dst: str) -> None:
        """Server-side copy, then delete of the source."""
        import obstore

        key_src = self._writable(src)
        self.copy(src, dst)
        try:
            obstore.delete(self.store, key_src)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error(src, exc) from None

    def open_append(self, path: str) -> BinaryIO:
        self._writable(path)
        raise StorageError(path, UNSUPPORTED)

    def hold(self, path: str) -> AbstractContextManager[None]:
        self._writable(path)
        raise StorageError(path, UNSUPPORTED)

    def remove_empty_parents(self, path: str, stop: str) -> None:
        """Nothing to do: an object store has no folders."""


class _RangeReader(io.RawIOBase):
    """Raw reads of one object by ranged GETs (io.BufferedReader adds the buffering)."""

    def __init__(
        self, driver: ObjectStoreDriver, path: str, key: str, size: int, etag: str | None
    ) -> None:
        super().__init__()
        self._driver, self._path, self._key = driver, path, key
        self._size, self._etag = size, etag
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        import obstore

        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        options: dict[str, Any] = {"range": (self._pos, self._pos + want)}
        if self._etag:
            options["if_match"] = self._etag
        try:
            data = obstore.get(self._driver.store, self._key, options=options).bytes()  # type: ignore[arg-type]
        except Exception as exc:
            if status_of(exc) == 412:
                raise StorageError(self._path, "object replaced while being read") from None
            raise self._driver._error(self._path, exc) from None
        got = len(data)
        memoryview(buffer)[:got] = memoryview(data)
        self._pos += got
        return got
