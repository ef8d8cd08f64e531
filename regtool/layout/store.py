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
from regtool.layout.detect import choose_root, locate
from regtool.layout.reader import Layout, RegistryReader
from regtool.layout.v1.reader import V1Reader
from regtool.layout.v2.reader import V2Reader
from regtool.storage.driver import LockTimeout, StorageDriver
from regtool.storage.filesystem import FilesystemDriver

if TYPE_CHECKING:  # the writer and the lock load only when used: read-only commands start fast
    from regtool.layout.v2.writer import V2Writer

__all__ = ["LockTimeout", "Store", "open_storage"]


@dataclass(frozen=True, slots=True)
class Store:
    """An opened storage: its layout (None when empty), reader, writer and lock.

    `writer` is a V2Writer on a writable store whose layout is not v1, else None. `driver` is
    the reader's driver (writable iff the store is); ops still use it to delete entries.
    """

    root: Path
    layout: Layout | None
    driver: StorageDriver
    reader: RegistryReader
    writer: V2Writer | None
    writable: bool
    fsync: bool  # writes reach the disk file by file (False: the caller flushes)

    @contextmanager
    def lock(self, *, exclusive: bool, timeout: float = 0.0) -> Iterator[None]:
        """Hold the storage's writers' lock (`.regtool.lock`, flock) shared or exclusive.

        Raises LockTimeout (its `path` names the lock) when not granted within `timeout`.
        """
        from regtool.storage.lock import storage_lock

        with storage_lock(self.root, exclusive=exclusive, timeout=timeout):
            yield


def open_storage(
    root: Path | None = None,
    config: Path | None = None,
    *,
    writable: bool = False,
    fsync: bool = True,
) -> Store:
    """Open an existing storage: --root wins, then --config's rootdirectory, then ./registry.

    Refuses a missing root, a file, or a folder holding something else than registry storage
    (RootError, exit 3). An empty folder opens as layout None, read as an empty v2 tree.
    `fsync=False` skips per-file fsync on writes (callers that flush themselves).
    """
    path = choose_root(root, config)
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
    reader: RegistryReader
    if layout == "v1":
        reader = V1Reader(driver, base)
    else:
        reader = V2Reader(driver, base)
    writer = None
    if writable and layout != "v1":
        from regtool.layout.v2.writer import V2Writer

        writer = V2Writer(driver)
    return Store(base, layout, driver, reader, writer, writable, fsync)
