"""Open, list, stat and remove below a root folder without ever following a symbolic link.

The root itself may be reached through links (`/srv/registry -> /data/registry`); every
component below it is untrusted. A symbolic link there is a foreign object: opening through
it fails with ELOOP, listing reports it as such, and removal refuses trees that hold one.

On Linux 5.6+ `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` checks a whole key in one
system call, race-free; elsewhere (or where seccomp forbids it) each component is opened
with O_NOFOLLOW | O_DIRECTORY relative to the one before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | O_NONBLOCK
# An O_PATH|O_NOFOLLOW descriptor names a trailing symlink itself instead of failing:
# what stat needs to say what is there.
PATH_FLAGS = O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_WALK_FLAGS = O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (unified syscall table)
_RESOLVE = 0x04 | 0x08  # RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[[int, str, int], int] | None:
    """openat2(2) through libc's syscall(), or None where it cannot be used."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol table
        return None
    # No argtypes (they cost microseconds per call): the number and the size are passed as
    # ready-made C longs, the folder descriptor as an int, the key as bytes.
    syscall.restype = ctypes.c_long
    number = ctypes.c_long(_SYS_OPENAT2)
    size = ctypes.c_size_t(ctypes.sizeof(_OpenHow))
    records: list[_OpenHow] = []  # kept alive for the references below
    hows: dict[int, object] = {}
    get_errno = ctypes.get_errno

    def openat2(dir_fd: int, key: str, flags: int) -> int:
        how = hows.get(flags)
        if how is None:
            record = _OpenHow(flags, 0, _RESOLVE)
            records.append(record)
            how = hows[flags] = ctypes.byref(record)
        fd = syscall(number, dir_fd, key.encode("utf-8", "surrogateescape"), how, size)
        if fd < 0:
            code = get_errno()
            raise OSError(code, os.strerror(code), key)
        return fd

    try:  # probe once: old kernels answer ENOSYS, some sandboxes EPERM
        os.close(openat2(-100, ".", DIR_FLAGS))  # -100: AT_FDCWD
    except OSError:
        return None
    return openat2


_openat2 = _load_openat2()


def _walk_open(dir_fd: int, key: str, flags: int) -> int:
    """The portable way: one O_NOFOLLOW|O_DIRECTORY open per folder on the way."""
    parts = key.split("/")
    current = dir_fd
    try:
        for part in parts[:-1]:
            following = os.open(part, _WALK_FLAGS, dir_fd=current)
            if current != dir_fd:
                os.close(current)
            current = following
        return os.open(parts[-1], flags, dir_fd=current)
    finally:
        if current != dir_fd:
            os.close(current)


def use_portable_walk(enabled: bool) -> None:
    """Force (or stop forcing) the component-by-component walk; for tests."""
    global open_beneath
    open_beneath = _walk_open if enabled or _openat2 is None else _openat2


# open_beneath(dir_fd, key, flags): `key` (not empty) below the folder `dir_fd`, no link
# followed on the way or at the end. Look it up as `nofollow.open_beneath` at each call
# (tests switch it).
open_beneath: Callable[[int, str, int], int] = _openat2 or _walk_open


def describe(mode: int) -> str:
    """What kind of object a mode is, in words, for messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


@dataclass(frozen=True, slots=True)
class Foreign:
    """A symbolic link or special file below the root: `key` and what it is."""

    key: str
    what: str  # "a symbolic link to '/elsewhere'", "a FIFO", ...


class Beneath:
    """Opens keys (slash-separated, already validated) below `root` without following links."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd: int | None = None
        self._lock = threading.Lock()

    def root_fd(self) -> int:
        fd = self._fd
        if fd is None:
            with self._lock:
                if self._fd is None:
                    # the root may itself be a link: it is trusted, so it is followed
                    self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    # closed with this object: a command run in-process (or a test) must
                    # not keep the storage's file system busy after it
                    weakref.finalize(self, os.close, self._fd)
                fd = self._fd
        return fd

    def open(self, key: str, flags: int) -> int:
        """A descriptor for `key` ('' is the root); OSError(ELOOP) when a link is on the way."""
        root = self.root_fd()
        if not key:
            return os.open(".", flags & ~os.O_NOFOLLOW, dir_fd=root)
        return open_beneath(root, key, flags)

    def lstat(self, key: str) -> os.stat_result:
        """The object at `key` itself (a trailing link is described, not followed)."""
        fd = self.open(key, PATH_FLAGS)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def foreign_on_the_way(self, key: str) -> Foreign | None:
        """The first link or special file on the way to `key` (slow; for messages)."""
        root = self.root_fd()
        parts = key.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            try:
                st = os.stat(prefix, dir_fd=root, follow_symlinks=False)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                return Foreign(prefix, self.link_words(prefix))
            if not stat.S_ISDIR(st.st_mode) and depth < len(parts):
                return None
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                return Foreign(prefix, describe(st.st_mode))
        return None

    def link_words(self, key: str) -> str:
        try:
            target = os.readlink(key, dir_fd=self.root_fd())
        except OSError:
            return "a symbolic link"
        return f"a symbolic link to {target[:200]!r}"

    def link_target(self, key: str) -> str | None:
        """Where a link below the root points, as a normalised absolute path (not followed)."""
        try:
            target = os.readlink(key, dir_fd=self.root_fd())
        except OSError:
            return None
        folder = os.path.dirname(os.path.join(os.path.abspath(self.root), key))
        return os.path.normpath(os.path.join(folder, target))

    def relative(self, path: str) -> str | None:
        """The key of an absolute path below the root ('' for the root), else None
        (lexical: the root as given and as resolved both count)."""
        for base in (os.path.normpath(os.path.abspath(self.root)), os.path.realpath(self.root)):
            if path == base:
                return ""
            head = base.rstrip(os.sep) + os.sep
            if path.startswith(head):
                return path[len(head) :].replace(os.sep, "/")
        return None

    # -- removal -------------------------------------------------------------------------
    def remove(self, key: str) -> bool:
        """Remove a regular file, or a folder with everything below it; False when absent.

        Refuses (ForeignObject, nothing removed) when the key, a folder on the way or
        anything below it is a link or special file. Every step is relative to an open
        folder descriptor, so a folder swapped for a link meanwhile is not followed either.
        """
        parent_key, _, name = key.rpartition("/")
        try:
            parent = self.open(parent_key, DIR_FLAGS)
        except FileNotFoundError:
            return False
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if stat.S_ISREG(st.st_mode):
                os.unlink(name, dir_fd=parent)
                return True
            if not stat.S_ISDIR(st.st_mode):
                raise ForeignObject(Foreign(key, self._what(key, st.st_mode)))
            _check_tree(parent, name, key, st)
            _remove_tree(parent, name)
            return True
        finally:
            os.close(parent)

    def rmdir_empty(self, key: str) -> bool:
        """Remove an empty folder (never through a link); False when absent or not empty."""
        parent_key, _, name = key.rpartition("/")
        try:
            parent = self.open(parent_key, DIR_FLAGS)
        except OSError:
            return False
        try:
            os.rmdir(name, dir_fd=parent)
            return True
        except OSError:
            return False
        finally:
            os.close(parent)

    def _what(self, key: str, mode: int) -> str:
        return self.link_words(key) if stat.S_ISLNK(mode) else describe(mode)


class ForeignObject(OSError):
    """A link or special file where regtool would have to follow or remove it."""

    def __init__(self, foreign: Foreign) -> None:
        super().__init__(errno.ELOOP, f"{foreign.what}: left alone", foreign.key)
        self.foreign = foreign


def _open_child(parent: int, name: str, expected: os.stat_result) -> int:
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, "changed while being removed", name)
    return fd


def _check_tree(parent: int, name: str, key: str, st: os.stat_result) -> None:
    """Raise ForeignObject for the first link or special file in the folder `name`."""
    fd = _open_child(parent, name, st)
    try:
        with os.scandir(fd) as entries:
            children = list(entries)
        for entry in children:
            child_key = f"{key}/{entry.name}"
            if entry.is_symlink():
                try:
                    target = os.readlink(entry.name, dir_fd=fd)
                except OSError:
                    target = "?"
                raise ForeignObject(Foreign(child_key, f"a symbolic link to {target[:200]!r}"))
            if entry.is_dir(follow_symlinks=False):
                _check_tree(fd, entry.name, child_key, entry.stat(follow_symlinks=False))
            elif not entry.is_file(follow_symlinks=False):
                mode = entry.stat(follow_symlinks=False).st_mode
                raise ForeignObject(Foreign(child_key, describe(mode)))
    finally:
        os.close(fd)


def _remove_tree(parent: int, name: str) -> None:
    """Remove a checked folder: files are unlinked, folders emptied then removed, and a
    link that appeared meanwhile is removed as a name, never followed."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    fd = _open_child(parent, name, st)
    try:
        with os.scandir(fd) as entries:
            children = list(entries)
        for entry in children:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(fd, entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
