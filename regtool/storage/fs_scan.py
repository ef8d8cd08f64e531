"""The filesystem's fast scan: plain os calls from held folder descriptors, no links followed.

gc touches every folder of a tree; the driver's general `list` (sorted Entry objects) and
`get` cost several times more per call, which is most of gc's time on big trees. These
methods do the same reads with fewer system calls and objects. Folders are opened with
no-follow semantics on every component below the root; every link or special file met is
noted (`Scan.note`) and never followed or read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from regtool.storage import meter, nofollow
from regtool.storage.driver import ForeignObjectError, PathNotFound, StorageError
from regtool.storage.filesystem import FilesystemDriver, read_checked, read_regular
from regtool.storage.nofollow import DIR_FLAGS, READ_FLAGS, describe
from regtool.storage.scan import Child, Folder, Scan

READ_CHUNK = 1 << 16
_S_IFMT = 0o170000
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR


class LocalScan(Scan):
    """`Scan` over a FilesystemDriver, with os-level fast paths."""

    def __init__(self, driver: FilesystemDriver) -> None:
        super().__init__(driver)
        self.local_driver = driver
        self.prefix = str(driver.root) + os.sep
        self._root_fd: int | None = None

    def _open_dir(self, key: str) -> int | None:
        """A no-follow descriptor of a local folder; None when it is absent or not reachable
        without a link (that link is noted)."""
        try:
            root = self._root_fd
            if root is None:
                root = self._root_fd = self.local_driver.beneath.root_fd()
            if not key:
                return self.local_driver.beneath.open(key, DIR_FLAGS)
            return nofollow.open_beneath(root, key, DIR_FLAGS)
        except OSError as exc:
            self._unreachable(key, exc)
            return None

    def _unreachable(self, key: str, exc: OSError) -> str | None:
        """Why `key` could not be reached: None when nothing is there, the words for a link
        or special file met on the way (noted); any other error is raised (StorageError)."""
        error = self.local_driver.translate(key, exc)
        if isinstance(error, PathNotFound):
            return None
        if isinstance(error, ForeignObjectError):
            self.note(error.foreign, error.what)
            return error.what
        raise error from None

    def dirs(self, prefix: str) -> list[str]:
        """Names of the real sub-folders of `prefix`, sorted; [] when it does not exist.

        Regular files are left out silently (verify reports them), links and special files
        are noted.
        """
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
        meter.files(len(names))
        return names

    def names(self, prefix: str) -> list[str]:
        """Every name in `prefix` (files and links too), sorted; cheaper than `dirs` for
        huge folders. For folders whose entries are each opened (with no-follow semantics)
        before anything is done with them: a link among them is noted then."""
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
        meter.files(len(names))
        return names

    def children(self, folder: str) -> list[Child] | None:
        """Everything in one folder, with sizes, in no order ([] when it is absent); None
        when the folder is a link or behind one (noted)."""
        try:
            fd = self.local_driver.beneath.open(folder, DIR_FLAGS)
        except OSError as exc:
            return [] if self._unreachable(folder, exc) is None else None
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
        meter.files(len(found))
        return found

    def entry(self, path: str) -> Child | None:
        """What is at `path`, no link followed on the way or at the end: None when nothing
        is; a Child with `foreign` set (and noted) for a link or special file there or on
        the way."""
        name = path.rpartition("/")[2]
        meter.files(1)
        try:
            st = self.local_driver.beneath.lstat(path)
        except OSError as exc:
            what = self._unreachable(path, exc)
            return None if what is None else Child(name, 0, 0.0, False, what)
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return Child(name, st.st_size, st.st_mtime, stat.S_ISDIR(mode))
        what = self.local_driver.beneath.link_words(path) if stat.S_ISLNK(mode) else describe(mode)
        self.note(path, what)
        return Child(name, 0, st.st_mtime, False, what)

    @contextmanager
    def folder(self, prefix: str) -> Iterator[Folder]:
        """One folder held open while its entries are looked at (paths relative to it are
        walked from it: short, and never through a link)."""
        fd = self._open_dir(prefix)
        if fd is None:
            yield LocalFolder(self, prefix, [], None)
            return
        try:
            names = os.listdir(fd)
            names.sort()
            meter.files(len(names))
            yield LocalFolder(self, prefix, names, fd)
        except OSError as exc:
            raise StorageError(prefix, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def _open(self, path: str) -> int:
        """A no-follow descriptor of `path`, opened from the root's descriptor."""
        local = self.local_driver
        try:
            root = self._root_fd
            if root is None:
                root = self._root_fd = local.beneath.root_fd()
            fd = nofollow.open_beneath(root, path, READ_FLAGS)
        except OSError as exc:
            raise local.translate(path, exc) from None
        meter.files(1)
        return fd

    def read(self, path: str, limit: int | None = None) -> bytes:
        """A regular file's bytes; PathNotFound, ForeignObjectError, TooLarge (over `limit`,
        never read whole) or StorageError.

        The hot path of gc (every link and manifest): one no-follow open from the root's
        descriptor, one fstat (only a regular file is ever read: never a FIFO, a device or
        a folder) and, for a file smaller than one chunk, one read.
        """
        fd = self._open(path)
        try:
            return read_regular(fd, path, limit, READ_CHUNK)
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def read_stamped(self, path: str, limit: int | None = None) -> tuple[bytes, float | None]:
        """`read` and the mtime from the same fstat: no second system call."""
        fd = self._open(path)
        try:
            st = os.fstat(fd)
            return read_checked(fd, st, path, limit, READ_CHUNK), st.st_mtime
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def mtime(self, path: str) -> float | None:
        """The mtime of a regular file; None when absent or anything else.

        Only the last component is checked: callers pass paths whose folders they listed
        without following links.
        """
        try:
            st = os.stat(self.prefix + path, follow_symlinks=False)
        except OSError:
            return None
        return st.st_mtime if stat.S_ISREG(st.st_mode) else None

    def absent(self, path: str) -> bool:
        """True only when nothing at all is at `path` (a link there is not nothing)."""
        try:
            self.local_driver.beneath.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False
        return False


@dataclass(frozen=True, slots=True)
class LocalFolder(Folder):
    """A listed folder and its open descriptor (None when it was absent or a link)."""

    fd: int | None = None

    def entry(self, relative: str) -> Child | None:
        """Like `Scan.entry` for `key/relative`, each component looked at from `fd`."""
        fd = self.fd
        if fd is None:
            return self.scan.entry(f"{self.key}/{relative}")
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
            self.scan.note(key, what)
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
