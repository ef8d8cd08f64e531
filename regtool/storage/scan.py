"""Bulk reads for whole-storage scans (gc's), over any driver.

gc touches every folder and reads every link and manifest. `Scan` does that through the
driver's own methods; a driver with a faster way (the filesystem: plain os calls from held
folder descriptors, see fs_scan.py) returns its own subclass from `scanner()`.

Nothing is reached through a link: every link or special file met is recorded in
`foreign` (key -> what it is) and otherwise ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regtool.storage.driver import (
    Entry,
    FileInfo,
    ForeignObjectError,
    PathNotFound,
    StorageError,
)

if TYPE_CHECKING:
    from regtool.storage.driver import StorageDriver


@dataclass(frozen=True, slots=True)
class Child:
    """One entry of a folder; `foreign` says what a link or special file is."""

    name: str
    size: int
    mtime: float
    is_dir: bool
    foreign: str | None = None


class Scan:
    """Folder listings, whole-object reads and stats for a scan, through the driver."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.foreign: dict[str, str] = {}

    def note(self, key: str, what: str) -> None:
        self.foreign.setdefault(key, what)

    def _listed(self, prefix: str) -> list[Entry]:
        try:
            entries = self.driver.list(prefix)
        except ForeignObjectError as exc:
            self.note(exc.foreign, exc.what)
            return []
        for entry in entries:
            if entry.foreign is not None:
                self.note(f"{prefix}/{entry.name}", entry.foreign)
        return entries

    def dirs(self, prefix: str) -> list[str]:
        """Names of the real sub-folders of `prefix`, sorted; [] when it does not exist.

        Regular files are left out silently (verify reports them), links and special files
        are noted.
        """
        return [entry.name for entry in self._listed(prefix) if entry.is_dir]

    def names(self, prefix: str) -> list[str]:
        """Every name in `prefix` (files and links too), sorted; cheaper than `dirs` for
        huge folders. For folders whose entries are each opened (with no-follow semantics)
        before anything is done with them: a link among them is noted then."""
        return [entry.name for entry in self._listed(prefix)]

    def children(self, folder: str) -> list[Child] | None:
        """Everything in one folder, with sizes, in no order ([] when it is absent); None
        when the folder is a link or behind one (noted)."""
        try:
            entries = self.driver.list(folder)
        except ForeignObjectError as exc:
            self.note(exc.foreign, exc.what)
            return None
        found = []
        for entry in entries:
            if entry.foreign is not None or entry.is_dir:
                found.append(Child(entry.name, 0, 0.0, entry.is_dir, entry.foreign))
                continue
            try:
                info = self.driver.stat(f"{folder}/{entry.name}")
            except StorageError:
                continue
            found.append(Child(entry.name, info.size, info.mtime, False))
        return found

    def entry(self, path: str) -> Child | None:
        """What is at `path`, no link followed on the way or at the end: None when nothing
        is; a Child with `foreign` set (and noted) for a link or special file there or on
        the way."""
        name = path.rpartition("/")[2]
        try:
            info = self.driver.stat(path)
        except PathNotFound:
            return None
        except ForeignObjectError as exc:
            self.note(exc.foreign, exc.what)
            return Child(name, 0, 0.0, False, exc.what)
        return Child(name, info.size, info.mtime, info.is_dir)

    @contextmanager
    def folder(self, prefix: str) -> Iterator[Folder]:
        """One folder held while its entries are looked at (`Folder.entry`)."""
        yield Folder(self, prefix, self.names(prefix))

    def tree(self, prefix: str) -> list[FileInfo] | None:
        """Every file below `prefix` (links and special files with `foreign` set); None
        when `prefix` itself is behind a link (noted)."""
        try:
            return list(self.driver.walk(prefix))
        except ForeignObjectError as exc:
            self.note(exc.foreign, exc.what)
            return None

    def read(self, path: str, limit: int | None = None) -> bytes:
        """A regular file's bytes; PathNotFound, ForeignObjectError, TooLarge (over `limit`,
        never read whole) or StorageError."""
        return self.driver.get(path, limit)

    def read_stamped(self, path: str, limit: int | None = None) -> tuple[bytes, float | None]:
        """`read`, and the file's mtime (`mtime`'s answer) with it."""
        return self.read(path, limit), self.mtime(path)

    def mtime(self, path: str) -> float | None:
        """The mtime of a regular file; None when absent or anything else."""
        try:
            info = self.driver.stat(path)
        except StorageError:
            return None
        return None if info.is_dir else info.mtime

    def absent(self, path: str) -> bool:
        """True only when nothing at all is at `path` (a link there is not nothing)."""
        try:
            self.driver.stat(path)
        except PathNotFound:
            return True
        except StorageError:
            return False
        return False


@dataclass(frozen=True, slots=True)
class Folder:
    """A listed folder (`names`, sorted); `entry` looks below it."""

    scan: Scan
    key: str
    names: list[str]

    def entry(self, relative: str) -> Child | None:
        """Like `Scan.entry` for `key/relative`."""
        return self.scan.entry(f"{self.key}/{relative}")
