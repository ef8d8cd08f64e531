"""A driver view that answers listings from one flat listing per area, for object stores.

On an object store every `list` and `stat` is a round trip; a registry scan makes one per
folder and per file. A Snapshot lists each area it is given (a key prefix such as
`docker/registry/v2/repositories`) once, flat and paginated, the first time anything below
it is asked for; `list`, `stat`, `exists` and `walk` below an area are then answered from
memory, as of that listing. Small objects can be fetched ahead in one concurrent batch
(`prefetch`), and an object whose listed MD5 matches expected bytes needs no read at all
(`holds`). Everything else, and every write, goes to the driver underneath; writes update
the view so that it stays what the store holds.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from regtool.storage.driver import (
    Entry,
    FileInfo,
    Multipart,
    PathNotFound,
    StorageDriver,
    StorageError,
    TooLarge,
)
from regtool.storage.scan import Scan

# Called once an area is listed, to settle and prefetch what the scans will read.
Warm = Callable[["Snapshot", str], None]


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class Snapshot:
    """Read listings of `areas` from memory; see the module docstring."""

    forks = False  # its driver is an object store

    def __init__(
        self, driver: StorageDriver, areas: Iterable[str], warm: Warm | None = None
    ) -> None:
        self.driver = driver
        self.areas = tuple(sorted(areas, key=len, reverse=True))
        self._area_set = frozenset(self.areas)
        self.warm = warm
        self._loaded: set[str] = set()
        self._files: dict[str, FileInfo] = {}
        self._dirs: dict[str, dict[str, bool]] = {}  # folder -> child name -> is_dir
        self._cache: dict[str, bytes] = {}

    def scanner(self) -> Scan:
        return Scan(self)

    def fresh(self) -> Snapshot:
        """A new view over the same driver, listed again on first use."""
        return Snapshot(self.driver, self.areas, self.warm)

    def window(self, areas: Iterable[str], infos: Iterable[FileInfo]) -> Snapshot:
        """A view over the same driver whose `areas` are already listed: `infos`, every
        object below them (from `windows`). Nothing else is held; no warm runs."""
        view = Snapshot(self.driver, areas)
        view._loaded.update(view.areas)
        for info in infos:
            area = view._area(info.path)
            if area is not None:
                view._add(info, area)
        return view

    def windows(
        self, area: str, unit_of: Callable[[str], str | None], max_keys: int
    ) -> Iterator[tuple[list[str], list[FileInfo]]]:
        """The objects below `area` in consecutive batches of whole units, streamed from one
        flat listing and never held all at once: memory stays flat whatever the store holds.

        `unit_of(path)` names the unit an object belongs to (a repository, a blob fan) or
        None (the object is skipped). A unit's objects must come in one run of the listing's
        key order; a batch ends at the first unit boundary after `max_keys` objects.
        """
        units: list[str] = []
        batch: list[FileInfo] = []
        last = ""
        for info in self.driver.walk(area):
            if info.path <= last:  # a unit could come back: windows would split it
                raise StorageError(area, "the store lists keys out of order")
            last = info.path
            unit = unit_of(info.path)
            if unit is None:
                continue
            if not units or units[-1] != unit:
                if len(batch) >= max_keys:
                    yield units, batch
                    units, batch = [], []
                units.append(unit)
            batch.append(info)
        if units:
            yield units, batch

    # -- the view ----------------------------------------------------------------------------
    def _owning(self, path: str) -> str | None:
        """The innermost area holding `path`, or None outside every area."""
        probe = path
        while probe:
            if probe in self._area_set:
                return probe
            probe = probe.rpartition("/")[0]
        return None

    def _area(self, path: str) -> str | None:
        """The area holding `path` (listed on first use), or None outside every area."""
        area = self._owning(path)
        if area is not None and area not in self._loaded:
            self._load(area)
        return area

    def _load(self, area: str) -> None:
        self._loaded.add(area)
        for info in self.driver.walk(area):
            self._add(info, area)
        if self.warm is not None:
            self.warm(self, area)

    def _add(self, info: FileInfo, area: str) -> None:
        self._files[info.path] = info
        child = info.path
        is_dir = False
        while child != area and child:
            folder = _parent(child)
            children = self._dirs.setdefault(folder, {})
            known = child.rpartition("/")[2] in children
            children[child.rpartition("/")[2]] = is_dir
            if known:
                break
            child, is_dir = folder, True

    def _listed_area(self, path: str) -> str | None:
        """The area holding `path` if it is listed already (writes never list one)."""
        area = self._owning(path)
        return area if area in self._loaded else None

    def _forget(self, path: str, area: str) -> None:
        """Drop `path` (a file, or a folder and all below it) and every emptied parent."""
        self._cache.pop(path, None)
        if self._files.pop(path, None) is None and path in self._dirs:
            below = path + "/"
            for key in [k for k in self._files if k.startswith(below)]:
                del self._files[key]
                self._cache.pop(key, None)
            for key in [k for k in self._dirs if k == path or k.startswith(below)]:
                del self._dirs[key]
        child = path
        while child != area and child:
            folder = _parent(child)
            children = self._dirs.get(folder)
            if children is None:
                break
            children.pop(child.rpartition("/")[2], None)
            if children or folder == area:
                break
            del self._dirs[folder]
            child = folder

    # -- reads -----------------------------------------------------------------------------
    def list(self, prefix: str) -> list[Entry]:
        if self._area(prefix) is None:
            return self.driver.list(prefix)
        children = self._dirs.get(prefix, {})
        return [Entry(name, is_dir) for name, is_dir in sorted(children.items())]

    def stat(self, path: str) -> FileInfo:
        if self._area(path) is None:
            return self.driver.stat(path)
        info = self._files.get(path)
        if info is not None:
            return info
        if path in self._dirs:
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path)

    def exists(self, path: str) -> bool:
        if self._area(path) is None:
            return self.driver.exists(path)
        return path in self._files or path in self._dirs

    def walk(self, prefix: str) -> Iterator[FileInfo]:
        if self._area(prefix) is None:
            yield from self.driver.walk(prefix)
            return
        if prefix in self._files:
            yield self._files[prefix]
            return
        stack = [(prefix, iter(sorted(self._dirs.get(prefix, {}).items())))]
        while stack:
            folder, children = stack[-1]
            step = next(children, None)
            if step is None:
                stack.pop()
                continue
            path = f"{folder}/{step[0]}"
            if step[1]:
                stack.append((path, iter(sorted(self._dirs.get(path, {}).items()))))
            else:
                yield self._files[path]

    def get(self, path: str, limit: int | None = None) -> bytes:
        data = self._cache.get(path)
        if data is None:
            if self._area(path) is not None and path not in self._files:
                raise PathNotFound(path)
            return self.driver.get(path, limit)
        if limit is not None and len(data) > limit:
            raise TooLarge(path, limit)
        return data

    def holds(self, path: str, data: bytes) -> bool:
        """True when the listing proves the object at `path` holds exactly `data` (its MD5
        matches); False when it does not or cannot tell."""
        if self._area(path) is None:
            return False
        info = self._files.get(path)
        if info is None or info.md5 is None or info.size != len(data):
            return False
        return info.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()

    def settle(self, path: str, data: bytes) -> bool:
        """Remember `data` as the content of `path` when the listing proves it (`holds`)."""
        if self.holds(path, data):
            self._cache[path] = data
            return True
        return False

    def prefetch(self, paths: Iterable[str], limit: int) -> None:
        """Fetch the objects among `paths` of at most `limit` bytes in one concurrent batch,
        when the driver can (`get_many`); later `get`s of them need no round trip. Below an
        area only listed objects are fetched; outside every area (a window's view of blobs)
        any path is tried, and a bigger or missing object is simply not kept."""
        get_many = getattr(self.driver, "get_many", None)
        if get_many is None:
            return
        wanted = []
        for path in paths:
            if path in self._cache:
                continue
            if self._area(path) is not None:
                info = self._files.get(path)
                if info is None or info.size > limit:
                    continue
            wanted.append(path)
        if not wanted:
            return
        for path, value in get_many(wanted, limit).items():
            if isinstance(value, bytes):
                self._cache[path] = value

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        return self.driver.open(path, offset)

    # -- writes go through and keep the view --------------------------------------------------
    def _wrote(self, path: str, size: int) -> None:
        area = self._listed_area(path)
        self._cache.pop(path, None)
        if area is not None:
            self._add(FileInfo(path, size, time.time(), False), area)

    def put(self, path: str, data: bytes) -> None:
        self.driver.put(path, data)
        self._wrote(path, len(data))

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        written = self.driver.put_stream(path, chunks)
        self._wrote(path, written)
        return written

    def delete(self, path: str) -> None:
        self.driver.delete(path)
        area = self._listed_area(path)
        if area is not None:
            self._forget(path, area)
        else:
            self._cache.pop(path, None)

    def move(self, src: str, dst: str) -> None:
        size = self.stat(src).size
        self.driver.move(src, dst)
        area = self._listed_area(src)
        if area is not None:
            self._forget(src, area)
        self._wrote(dst, size)

    def multipart_uploads(self, prefix: str) -> builtins.list[Multipart]:
        """The driver's unfinished multipart uploads below `prefix` (never cached)."""
        listing = getattr(self.driver, "multipart_uploads", None)
        return listing(prefix) if listing is not None else []

    def abort_multipart(self, path: str, upload_id: str) -> None:
        self.driver.abort_multipart(path, upload_id)  # type: ignore[attr-defined]

    def open_append(self, path: str) -> BinaryIO:
        raise StorageError(path, "appending is not possible through a snapshot")

    def remove_empty_parents(self, path: str, stop: str) -> None:
        self.driver.remove_empty_parents(path, stop)

    def hold(self, path: str) -> AbstractContextManager[None]:
        return self.driver.hold(path)
