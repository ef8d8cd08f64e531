"""Fast reading for gc: plain os calls on a local tree, a lean manifest scan, forked workers.

gc touches every folder of a registry; on a big tree the per-call cost of the general driver
(sorted Entry objects, FileInfo per file) and of the full manifest parser is most of its
time. These helpers do the same reads with fewer system calls and objects, and split the
work over forked processes on a big tree. Any driver other than the filesystem one goes
through its own methods.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from regtool.model import mediatype as mt
from regtool.model.jsondoc import JsonError, parse_json
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError
from regtool.storage.filesystem import FilesystemDriver, read_fd

HEX = "0123456789abcdef"
SHA256_LENGTH = len("sha256:") + 64
READ_CHUNK = 1 << 16
PARALLEL_MIN_REPOSITORIES = 64
MAX_WORKERS = 4
T = TypeVar("T")
R = TypeVar("R")


def _local(key: str, call: Callable[[str], T], full: str) -> T | None:
    """`call(full)`, None when the path is absent; other OS errors become StorageError(key)."""
    try:
        return call(full)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(key, exc.strerror or str(exc)) from None


def _subfolders(full: str) -> list[str]:
    with os.scandir(full) as entries:
        return [entry.name for entry in entries if entry.is_dir()]


class Files:
    """Folder listings and whole-file reads, as plain os calls on a local filesystem.

    gc touches every folder of the tree; the driver's general `list` (sorted Entry objects)
    and `get` cost several times more per call, which is most of gc's time on big trees.
    Any other driver goes through its own methods.
    """

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        local = isinstance(driver, FilesystemDriver)
        self.prefix = str(driver.root) + os.sep if local else None  # type: ignore[attr-defined]

    def dirs(self, prefix: str) -> list[str]:
        """Names of the sub-folders of `prefix`, sorted; [] when it does not exist."""
        if self.prefix is None:
            return [entry.name for entry in self.driver.list(prefix) if entry.is_dir]
        names = _local(prefix, _subfolders, self.prefix + prefix) or []
        names.sort()
        return names

    def names(self, prefix: str) -> list[str]:
        """Every name in `prefix` (files too), sorted; cheaper than `dirs` for huge folders."""
        if self.prefix is None:
            return [entry.name for entry in self.driver.list(prefix)]
        names = _local(prefix, os.listdir, self.prefix + prefix) or []
        names.sort()
        return names

    def one(self, path: str) -> list[tuple[str, int, float]]:
        """[(path, size, mtime)] of one file, [] when it is absent or a folder."""
        if self.prefix is None:
            try:
                info = self.driver.stat(path)
            except PathNotFound:
                return []
            return [] if info.is_dir else [(path, info.size, info.mtime)]
        st = _local(path, os.stat, self.prefix + path)
        if st is None or stat.S_ISDIR(st.st_mode):
            return []
        return [(path, st.st_size, st.st_mtime)]

    def files(self, prefix: str) -> list[tuple[str, int, float]]:
        """(path, size, mtime) of every file below `prefix`."""
        if self.prefix is None:
            return [(info.path, info.size, info.mtime) for info in self.driver.walk(prefix)]
        names = _local(prefix, os.listdir, self.prefix + prefix)
        if names is None:
            return []
        if len(names) == 1:  # the usual blob folder: `data` alone, one stat
            path = f"{prefix}/{names[0]}"
            try:
                st = os.stat(self.prefix + path, follow_symlinks=False)
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise StorageError(path, exc.strerror or str(exc)) from None
            if not stat.S_ISDIR(st.st_mode):
                return [(path, st.st_size, st.st_mtime)]
        found = []
        stack = [prefix]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(self.prefix + folder) as entries:
                    for entry in entries:
                        path = f"{folder}/{entry.name}"
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(path)
                            continue
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue
                        found.append((path, st.st_size, st.st_mtime))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StorageError(folder, exc.strerror or str(exc)) from None
        found.sort()
        return found

    def read(self, path: str, limit: int | None = None) -> bytes:
        """The whole file; with `limit`, TooLarge when it is bigger (never read whole)."""
        if self.prefix is None:
            return self.driver.get(path, limit)
        try:
            fd = os.open(self.prefix + path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        try:
            return read_fd(fd, path, limit, READ_CHUNK)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)


def _digests(descriptors: object) -> list[str] | None:
    """The digests of well-formed sha256 descriptors; None for anything less common."""
    if not isinstance(descriptors, list):
        return None
    found = []
    for desc in descriptors:
        if type(desc) is not dict:
            return None
        digest, size = desc.get("digest"), desc.get("size")
        if type(digest) is not str or type(size) is not int or size < 0:
            return None
        if len(digest) != SHA256_LENGTH or digest[:7] != "sha256:" or digest[7:].strip(HEX):
            return None  # not a canonical sha256 digest: let the full parser say why
        found.append(digest)
    return found


def quick_node(raw: bytes) -> Node | None:
    """The common case (a schema2/OCI image manifest without subject) without the full parse.

    Accepts exactly what `parse_manifest` accepts for that case; None means "parse fully".
    """
    try:
        doc = parse_json(raw)
    except JsonError:
        return None
    if type(doc) is not dict or doc.get("schemaVersion") != 2 or "subject" in doc:
        return None
    media_type = doc.get("mediaType")
    if "manifests" in doc or not (
        media_type in mt.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc)
    ):
        return None
    blobs = _digests([doc.get("config")])
    layers = _digests(doc.get("layers"))
    if blobs is None or layers is None:
        return None
    artifact = doc.get("artifactType")
    if artifact is not None and not isinstance(artifact, str):
        return None
    return Node((*blobs, *layers), (), None)


@dataclass(frozen=True, slots=True)
class Node:
    """What a stored manifest references: blobs, child manifests, and its subject."""

    blobs: tuple[str, ...]
    children: tuple[str, ...]
    subject: str | None


def worker_count(files: Files, repositories: int) -> int:
    """Two or more processes on a big local tree (gc is bound by system calls per file)."""
    if files.prefix is None or repositories < PARALLEL_MIN_REPOSITORIES:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def split(items: list[T], parts: int) -> list[list[T]]:
    return [items[i::parts] for i in range(parts)] if parts > 1 else [items]


_TASK: tuple[Callable[[Any], Any], list[Any]] | None = None


def _run_task(index: int) -> Any:
    assert _TASK is not None
    function, chunks = _TASK
    return function(chunks[index])


def run_parts(function: Callable[[list[T]], R], chunks: list[list[T]]) -> list[R]:
    """`function` over each chunk: the first here, the others in forked workers."""
    global _TASK
    if len(chunks) == 1:
        return [function(chunks[0])]
    _TASK = (function, chunks)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(chunks) - 1, mp_context=context) as pool:
            futures = [pool.submit(_run_task, i) for i in range(1, len(chunks))]
            first = function(chunks[0])
            return [first, *(future.result() for future in futures)]
    finally:
        _TASK = None
