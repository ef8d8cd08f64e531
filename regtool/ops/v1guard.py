"""What migrate checks before it reads a file of a v1 tree: no symlink, a regular file.

A v1 tree is read, not trusted. `images/<id>/layer` may be a symlink to a file outside the
tree (migrate would copy it into a public blob), a `json` may be a FIFO (a read that never
ends), a `parent` may be `../../x`. Every file migrate reads (tag files, image jsons,
ancestry, layers) must be a regular file reached through no symlink at all, and every id
on a chain must be a v1 image id; otherwise the chain is skipped with a finding. A
missing file is not a problem here: the reader reports it in its own words.

Only a filesystem driver (one with `full(key)`) can hold symlinks; for others every check
passes.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from regtool.layout.v1 import paths as v1paths
from regtool.layout.v1.reader import MAX_CHAIN, V1Reader
from regtool.model.digest import is_v1_id
from regtool.storage.driver import StorageDriver, StorageError

FOLLOWS_NONE = "migrate never follows symlinks in the v1 tree"
MAX_JSON = 8 << 20  # an image json larger than this is not one


class Guard:
    """Checks keys of one driver; folders found sound are remembered."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._full = getattr(driver, "full", None)
        self._sound_dirs: set[str] = set()

    def problem(self, key: str) -> str | None:
        """Why the file at `key` must not be read, or None."""
        if self._full is None:
            return None
        parts = key.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            last = depth == len(parts)
            if not last and prefix in self._sound_dirs:
                continue
            try:
                mode = os.lstat(self._full(prefix)).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return None  # missing: the reader says so
            except OSError as exc:
                return f"{prefix}: {exc.strerror or exc}"
            if stat.S_ISLNK(mode):
                return f"{prefix} is a symlink ({FOLLOWS_NONE})"
            if not last:
                if not stat.S_ISDIR(mode):
                    return None  # the reader reports what it cannot find
                self._sound_dirs.add(prefix)
            elif not stat.S_ISREG(mode):
                return f"{key} is not a regular file"
        return None

    def image_problem(self, image_id: str) -> str | None:
        """The first problem with the files of one image folder."""
        for key in (
            v1paths.image_json(image_id),
            v1paths.image_ancestry(image_id),
            v1paths.image_layer(image_id),
        ):
            problem = self.problem(key)
            if problem is not None:
                return f"image {image_id[:12]}: {problem}"
        return None

    def parents_problem(self, reader: V1Reader, image_id: str) -> str | None:
        """Walk the json `parent` links from `image_id`, checking each image on the way
        before the reader opens it; the first problem found, or None."""
        seen: set[str] = set()
        current: str | None = image_id
        while current and current not in seen and len(seen) < MAX_CHAIN:
            seen.add(current)
            problem = self.image_problem(current)
            if problem is not None:
                return problem
            info = reader.image(current).json
            parent = info.parent if info is not None else None
            if parent is not None and not is_v1_id(parent):
                return f"image {current[:12]}: parent {parent[:80]!r} is not a v1 image id"
            current = parent
        return None

    def open(self, key: str) -> BinaryIO:
        """Open the regular file at `key` for reading, refusing symlinks and swaps."""
        problem = self.problem(key)
        if problem is not None:
            raise StorageError(key, problem)
        handle = self.driver.open(key)
        if self._full is not None:
            opened = os.fstat(handle.fileno())
            try:
                now = os.lstat(self._full(key))
            except OSError:
                now = None
            if (
                now is None
                or not stat.S_ISREG(opened.st_mode)
                or (opened.st_dev, opened.st_ino) != (now.st_dev, now.st_ino)
            ):
                handle.close()
                raise StorageError(key, f"changed while migrating ({FOLLOWS_NONE})")
        return handle

    def get(self, key: str, limit: int = MAX_JSON) -> bytes:
        with self.open(key) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise StorageError(key, f"larger than {limit} bytes")
        return data
