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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from regtool.model import mediatype as mt
from regtool.model.jsondoc import JsonError, parse_json
from regtool.storage import nofollow
from regtool.storage.driver import (
    Entry,
    FileInfo,
    ForeignObjectError,
    PathNotFound,
    StorageDriver,
    StorageError,
)
from regtool.storage.filesystem import FilesystemDriver, read_regular
from regtool.storage.nofollow import DIR_FLAGS, READ_FLAGS, describe

HEX = "0123456789abcdef"
SHA256_LENGTH = len("sha256:") + 64
READ_CHUNK = 1 << 16
PARALLEL_MIN_REPOSITORIES = 64
MAX_WORKERS = 4
_S_IFMT = 0o170000
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Child:
    """One entry of a folder; `foreign` says what a link or special file is."""

    name: str
    size: int
    mtime: float
    is_dir: bool
    foreign: str | None = None


class Files:
    """Folder listings and whole-file reads, as plain os calls on a local filesystem.

    gc touches every folder of the tree; the driver's general `list` (sorted Entry objects)
    and `get` cost several times more per call, which is most of gc's time on big trees.
    Any other driver goes through its own methods.

    Nothing is reached through a link: folders are opened with no-follow semantics on every
    component below the root. Every link or special file met is recorded in `foreign`
    (key -> what it is) and otherwise ignored: gc neither follows nor deletes it.
    """

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.local = driver if isinstance(driver, FilesystemDriver) else None
        self.prefix = str(driver.root) + os.sep if self.local else None  # type: ignore[attr-defined]
        self.foreign: dict[str, str] = {}
        self._root_fd: int | None = None

    def note(self, key: str, what: str) -> None:
        self.foreign.setdefault(key, what)

    def _open_dir(self, key: str) -> int | None:
        """A no-follow descriptor of a local folder; None when it is absent or not reachable
        without a link (that link is noted)."""
        assert self.local is not None
        try:
            root = self._root_fd
            if root is None:
                root = self._root_fd = self.local.beneath.root_fd()
            if not key:
                return self.local.beneath.open(key, DIR_FLAGS)
            return nofollow.open_beneath(root, key, DIR_FLAGS)
        except OSError as exc:
            error = self.local.translate(key, exc)
            if isinstance(error, PathNotFound):
                return None
            if isinstance(error, ForeignObjectError):
                self.note(error.foreign, error.what)
                return None
            raise error from None

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
        if self.local is None:
            return [entry.name for entry in self._listed(prefix) if entry.is_dir]
        fd = self._open_dir(prefix)
        if fd is None:
            return []
        names = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        names.append(entry.name)
                    elif not entry.is_file(follow_symlinks=False):
                        self.note(f"{prefix}/{entry.name}", _what(entry, fd))
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        names.sort()
        return names

    def names(self, prefix: str) -> list[str]:
        """Every name in `prefix` (files and links too), sorted; cheaper than `dirs` for
        huge folders. For folders whose entries are each opened (with no-follow semantics)
        before anything is done with them: a link among them is noted then."""
        if self.local is None:
            return [entry.name for entry in self._listed(prefix)]
        fd = self._open_dir(prefix)
        if fd is None:
            return []
        try:
            names = os.listdir(fd)
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        names.sort()
        return names

    def children(self, folder: str) -> list[Child] | None:
        """Everything in one folder, with sizes, in no order ([] when it is absent); None
        when the folder is a link or behind one (noted)."""
        if self.local is None:
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
        try:
            fd = self.local.beneath.open(folder, DIR_FLAGS)
        except OSError as exc:
            error = self.local.translate(folder, exc)
            if isinstance(error, PathNotFound):
                return []
            if isinstance(error, ForeignObjectError):
                self.note(error.foreign, error.what)
                return None
            raise error from None
        found = []
        try:
            with os.scandir(fd) as listing:
                for item in listing:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    mode = st.st_mode
                    if stat.S_ISREG(mode):
                        found.append(Child(item.name, st.st_size, st.st_mtime, False))
                    elif stat.S_ISDIR(mode):
                        found.append(Child(item.name, st.st_size, st.st_mtime, True))
                    else:
                        what = _what(item, fd)
                        found.append(Child(item.name, 0, st.st_mtime, False, what))
        except OSError as exc:
            raise StorageError(folder, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        return found

    def entry(self, path: str) -> Child | None:
        """What is at `path`, no link followed on the way or at the end: None when nothing
        is; a Child with `foreign` set (and noted) for a link or special file there or on
        the way."""
        name = path.rpartition("/")[2]
        if self.local is None:
            try:
                info = self.driver.stat(path)
            except PathNotFound:
                return None
            except ForeignObjectError as exc:
                self.note(exc.foreign, exc.what)
                return Child(name, 0, 0.0, False, exc.what)
            return Child(name, info.size, info.mtime, info.is_dir)
        try:
            st = self.local.beneath.lstat(path)
        except OSError as exc:
            error = self.local.translate(path, exc)
            if isinstance(error, PathNotFound):
                return None
            if isinstance(error, ForeignObjectError):
                self.note(error.foreign, error.what)
                return Child(name, 0, 0.0, False, error.what)
            raise error from None
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return Child(name, st.st_size, st.st_mtime, stat.S_ISDIR(mode))
        what = self.local.beneath.link_words(path) if stat.S_ISLNK(mode) else describe(mode)
        self.note(path, what)
        return Child(name, 0, st.st_mtime, False, what)

    @contextmanager
    def folder(self, prefix: str) -> Iterator[Folder]:
        """One folder held open while its entries are looked at (paths relative to it are
        walked from it: short, and never through a link)."""
        if self.local is None:
            yield Folder(self, prefix, None, self.names(prefix))
            return
        fd = self._open_dir(prefix)
        if fd is None:
            yield Folder(self, prefix, None, [])
            return
        try:
            names = os.listdir(fd)
            names.sort()
            yield Folder(self, prefix, fd, names)
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

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
        never read whole) or StorageError.

        The hot path of gc (every link and manifest): one no-follow open from the root's
        descriptor, one fstat (only a regular file is ever read: never a FIFO, a device or
        a folder) and, for a file smaller than one chunk, one read.
        """
        local = self.local
        if local is None:
            return self.driver.get(path, limit)
        try:
            root = self._root_fd
            if root is None:
                root = self._root_fd = local.beneath.root_fd()
            fd = nofollow.open_beneath(root, path, READ_FLAGS)
        except OSError as exc:
            raise local.translate(path, exc) from None
        try:
            return read_regular(fd, path, limit, READ_CHUNK)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def mtime(self, path: str) -> float | None:
        """The mtime of a regular file; None when absent or anything else.

        Only the last component is checked: callers pass paths whose folders they listed
        without following links.
        """
        if self.prefix is None:
            try:
                info = self.driver.stat(path)
            except StorageError:
                return None
            return None if info.is_dir else info.mtime
        try:
            st = os.stat(self.prefix + path, follow_symlinks=False)
        except OSError:
            return None
        return st.st_mtime if stat.S_ISREG(st.st_mode) else None

    def absent(self, path: str) -> bool:
        """True only when nothing at all is at `path` (a link there is not nothing)."""
        if self.local is None:
            try:
                self.driver.stat(path)
            except PathNotFound:
                return True
            except StorageError:
                return False
            return False
        try:
            self.local.beneath.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False
        return False


@dataclass(frozen=True, slots=True)
class Folder:
    """A listed folder (`names`, sorted) and, on a local disk, its open descriptor."""

    files: Files
    key: str
    fd: int | None
    names: list[str]

    def entry(self, relative: str) -> Child | None:
        """Like `Files.entry` for `key/relative`, each component looked at from `fd`."""
        fd = self.fd
        if fd is None:
            return self.files.entry(f"{self.key}/{relative}")
        head, _, name = relative.partition("/")
        if name and "/" not in name:  # the usual `<folder>/<file>`: two short stats
            try:
                mode = os.stat(head, dir_fd=fd, follow_symlinks=False).st_mode
                if mode & _S_IFMT == _S_IFDIR:
                    st = os.stat(relative, dir_fd=fd, follow_symlinks=False)
                    mode = st.st_mode & _S_IFMT
                    if mode == _S_IFREG or mode == _S_IFDIR:
                        return Child(name, st.st_size, st.st_mtime, mode == _S_IFDIR)
                elif mode & _S_IFMT == _S_IFREG:
                    return None  # a file where a folder belongs: nothing below it
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError:
                pass  # said below, with the key
        parts = relative.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            try:
                st = os.stat(path, dir_fd=self.fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise StorageError(f"{self.key}/{path}", exc.strerror or str(exc)) from None
            mode = st.st_mode
            if depth < len(parts):  # a folder on the way
                if stat.S_ISDIR(mode):
                    continue
                if stat.S_ISREG(mode):
                    return None  # a file where a folder belongs: nothing below it
            elif stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                return Child(parts[-1], st.st_size, st.st_mtime, stat.S_ISDIR(mode))
            key = f"{self.key}/{path}"
            if stat.S_ISLNK(mode):
                try:
                    what = f"a symbolic link to {os.readlink(path, dir_fd=self.fd)[:200]!r}"
                except OSError:
                    what = "a symbolic link"
            else:
                what = describe(mode)
            self.files.note(key, what)
            return Child(parts[-1], 0, st.st_mtime, False, what)
        return None  # pragma: no cover - the loop always returns


def _what(entry: os.DirEntry[str], dir_fd: int) -> str:
    """What a link or special file found by scandir(dir_fd) is, in words."""
    if entry.is_symlink():
        try:
            return f"a symbolic link to {os.readlink(entry.name, dir_fd=dir_fd)[:200]!r}"
        except OSError:
            return "a symbolic link"
    try:
        return describe(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return "a special file"


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
