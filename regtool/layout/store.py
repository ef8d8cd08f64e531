"""One way to open storage: `open_storage()` finds the root, tells its layout and builds the
driver, reader, writer and lock around it. ops/ and server/ get a `Store`, never a driver class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from regtool.errors import RootError
from regtool.layout.detect import DEFAULT_ROOT, load_config, locate, locate_keys
from regtool.layout.reader import Layout, RegistryReader
from regtool.layout.v2.reader import V2Reader
from regtool.storage.driver import LockTimeout, StorageDriver, StorageError
from regtool.storage.filesystem import FilesystemDriver

if TYPE_CHECKING:  # the writer and the lock load only when used: read-only commands start fast
    from regtool.layout.v2.uploads import UploadSessions
    from regtool.layout.v2.writer import V2Writer
    from regtool.storage.objectstore import S3Settings

__all__ = ["LockTimeout", "Store", "open_storage"]


@dataclass(frozen=True, slots=True)
class Store:
    """An opened storage: its layout (None when empty), reader, writer and lock.

    `root` is the local folder, None on an object store; `location` names either for
    messages. `writer` is a V2Writer on a writable store whose layout is not v1, else None.
    `driver` is the reader's driver (writable iff the store is); ops still use it to delete
    entries. `uploads` keeps blob upload sessions (with the writer; None without one).
    """

    root: Path | None
    layout: Layout | None
    driver: StorageDriver
    reader: RegistryReader
    writer: V2Writer | None
    writable: bool
    fsync: bool  # writes reach the disk file by file (False: the caller flushes)
    location: str = ""
    uploads: UploadSessions | None = None

    def signed_url(self, path: str, seconds: int = 1200) -> str | None:
        """A URL that serves the object at `path` to anyone holding it for `seconds` (a
        presigned GET), or None where the storage cannot make one (a local folder)."""
        sign = getattr(self.driver, "sign", None)
        return sign(path, seconds) if sign is not None else None

    def reread(self, *, forks: bool = True) -> RegistryReader:
        """A reader over the same storage with nothing cached: what it read before, and an
        object store's listing, may have changed since. `forks=False`: its scans never fork
        worker processes (a reader used from a thread of a running server)."""
        from regtool.storage.snapshot import Snapshot

        driver = self.reader.driver
        if isinstance(driver, Snapshot):
            driver = driver.fresh()
        elif isinstance(driver, FilesystemDriver) and driver.forks and not forks:
            driver = FilesystemDriver(driver.root, readonly=True, fsync=False, forks=False)
        return reader_for(driver, self.reader.layout, self.root)

    def bulk_reader(self) -> RegistryReader:
        """A reader for a scan of everything: on an object store through a bulk view (one
        listing, batched reads, `prefetch` pays), on a disk the plain reader."""
        from regtool.storage.snapshot import Snapshot

        if self.root is not None or isinstance(self.reader.driver, Snapshot):
            return self.reader
        return reader_for(_bulk_view(self.reader.driver, self.layout), self.layout, None)

    @contextmanager
    def lock(
        self, *, exclusive: bool, timeout: float = 0.0, holder: str | None = None
    ) -> Iterator[None]:
        """Hold the storage's writers' lock (`.regtool.lock`, flock) shared or exclusive;
        an exclusive holder records `holder` ("regtool gc") and its pid in the lock file.

        Raises LockTimeout (its `path` names the lock, its `holder` what holds it where
        that can be told) when not granted within `timeout`.
        An object store has no lock (distribution has none either): this holds nothing.
        """
        if self.root is None:
            yield
            return
        from regtool.storage.lock import storage_lock

        with storage_lock(self.root, exclusive=exclusive, timeout=timeout, holder=holder):
            yield


def open_storage(
    root: Path | None = None,
    config: Path | None = None,
    *,
    writable: bool = False,
    fsync: bool = True,
    bulk: bool = True,
) -> Store:
    """Open an existing storage: --root wins, then --config's storage (a filesystem
    rootdirectory or an s3 bucket), then ./registry.

    Refuses a missing root, a file, or a folder holding something else than registry storage
    (RootError, exit 3). An empty folder opens as layout None, read as an empty v2 tree.
    `fsync=False` skips per-file fsync on writes (callers that flush themselves). On an
    object store, `bulk` reads through a Snapshot (one flat listing, batched reads): right
    for commands that scan everything, wasteful for one image.
    """
    path = root
    if path is None and config is not None:
        loaded = load_config(config)
        if loaded.s3 is not None:
            return open_bucket(loaded.s3, writable=writable, bulk=bulk)
        path = loaded.root
    path = path if path is not None else DEFAULT_ROOT
    if not path.exists():
        raise RootError(
            f"storage root {path} does not exist",
            hint="pass --root PATH, set REGTOOL_ROOT, or --config CONFIG.yml",
        )
    if not path.is_dir():
        raise RootError(f"storage root {path} is not a folder")
    try:
        base, layout = locate(path)
    except PermissionError as exc:
        raise RootError(f"cannot read storage root {path}: {exc.strerror}") from None
    driver = FilesystemDriver(base, readonly=not writable, fsync=fsync)
    reader = reader_for(driver, layout, base)
    writer = None
    uploads = None
    if writable and layout != "v1":
        from regtool.layout.v2.uploads import FilesystemUploads
        from regtool.layout.v2.writer import V2Writer

        writer = V2Writer(driver)
        uploads = FilesystemUploads(writer, fsync=fsync)
    return Store(base, layout, driver, reader, writer, writable, fsync, str(base), uploads)


def open_bucket(settings: S3Settings, *, writable: bool = False, bulk: bool = True) -> Store:
    """A Store over an S3 bucket laid out as distribution's s3 driver does."""
    try:
        from regtool.storage.objectstore import ObjectStoreDriver
    except ImportError:
        raise RootError(
            "reading an S3 bucket needs the s3 extra",
            hint="pip install 'regtool[s3]'",
        ) from None
    location = settings.location()
    try:
        store = ObjectStoreDriver(settings, readonly=not writable)
        store.check()
        layout = locate_keys(store)
    except StorageError as exc:
        raise RootError(f"{location}: {exc.message}") from None
    driver: StorageDriver = store
    if bulk:
        driver = _bulk_view(store, layout)
    reader = reader_for(driver, layout, None)
    writer = None
    uploads = None
    if writable and layout != "v1":
        from regtool.layout.v2.uploads_s3 import ObjectStoreUploads
        from regtool.layout.v2.writer import V2Writer

        writer = V2Writer(driver)
        # sessions go to the bucket itself (never through a Snapshot: other instances write)
        uploads = ObjectStoreUploads(V2Writer(store), store)
    return Store(None, layout, driver, reader, writer, writable, True, location, uploads)


def reader_for(driver: StorageDriver, layout: Layout | None, root: Path | None) -> RegistryReader:
    """The reader of `layout` over `driver` (an empty storage reads as v2)."""
    if layout == "v1":
        from regtool.layout.v1.reader import V1Reader  # loads for a v1 tree only

        return V1Reader(driver, root)
    return V2Reader(driver, root)


def _bulk_view(driver: StorageDriver, layout: Layout | None) -> StorageDriver:
    from regtool.storage.snapshot import Snapshot

    if layout == "v1":
        from regtool.layout.v1 import paths as v1paths

        return Snapshot(driver, (v1paths.IMAGES, v1paths.REPOSITORIES))
    from regtool.layout.v2 import bulk

    return Snapshot(driver, bulk.AREAS, bulk.warm)
