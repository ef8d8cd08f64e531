"""The members of an image tarball, read in one pass (stdin will do), symlinks followed.

Nothing is ever extracted: member names (`../../etc/passwd`, absolute paths) and symlink or
hardlink members only ever name other members of the same archive. A tar with more than
MAX_MEMBERS members, or a JSON member over its cap, is refused before it is read whole.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from regtool.errors import UnreadableError
from regtool.model.digest import is_digest
from regtool.model.jsondoc import JsonError, parse_json
from regtool.ops import layerio
from regtool.storage import meter

MAX_SMALL = 4 << 20  # manifest.json, index.json, manifests, v1 jsons: distribution's cap
MAX_CONFIG = 8 << 20  # image configs (what `ls` and `verify` read at most)
MAX_MEMBERS = 100_000  # a save of hundreds of images has a few thousand
MAX_HEADER = 1 << 20  # pax or GNU long-name headers (tarfile reads them whole)
KEEP_SMALL = 64 << 10  # members kept in memory whatever they hold (VERSION, tiny layers)
MAX_KEPT = 64 << 20  # all kept members together
_EXTENDED = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


def unreadable_tar(path: Path | str, exc: BaseException) -> UnreadableError:
    """The one-line error for an archive that cannot be read (damaged, or an OS error)."""
    if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError):
        return UnreadableError(f"{path}: {exc.strerror or exc}")
    return UnreadableError(
        f"{path}: not a readable tar archive ({exc})",
        hint="is the file complete? `tar tf FILE` shows where it breaks",
    )


class ArchiveError(ValueError):
    """A tarball member that is missing, truncated or does not match its name."""


class _BoundedInfo(tarfile.TarInfo):
    """A member header whose extended (pax, long-name) part is refused past MAX_HEADER
    instead of being read into memory whole (a gzip'ed tar can hide gigabytes there)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise tarfile.SubsequentHeaderError(  # type: ignore[attr-defined]  # not in typeshed
                f"extended header of {self.size} bytes"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


@dataclass
class Entry:
    """One member of the archive as the single pass met it."""

    kind: str  # file | link | sparse | other
    size: int = 0
    target: str = ""  # a link's member (already resolved against the link's folder)
    data: bytes | None = None  # small members, kept whole
    absorbed: Any = None  # what the absorb callback made of a large member


Absorb = Callable[[str, Iterator[bytes]], Any]


class Archive:
    """An image tarball read in one pass, front to back, never seeking (a pipe will do).

    `scan(absorb)` walks the members: small ones (JSON up to MAX_CONFIG, anything up to
    KEEP_SMALL) are kept in memory, at most MAX_KEPT bytes of them; every other regular
    member is handed to `absorb(name, chunks)` as it passes, and whatever that returns is
    remembered for the member (an import streams it into an upload session). Symlinks and
    hardlinks only ever name other members of the same archive. Afterwards `member()`,
    `read()` and `json()` answer about the kept members, `absorbed()` about the others.
    """

    def __init__(self, source: Path | BinaryIO, label: str | None = None) -> None:
        self.source = source
        self.path = label if label is not None else str(source)
        self.members: dict[str, Entry] = {}
        self._handle: IO[bytes] | None = None
        self._kept = 0

    def scan(self, absorb: Absorb) -> None:
        own = None
        try:
            if isinstance(self.source, Path):
                own = self.source.open("rb")
            fileobj: IO[bytes] = own if own is not None else self.source  # type: ignore[assignment]
            meter.phase("reading", _size(own))
            fileobj = meter.counted(fileobj)
            tar = tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=_BoundedInfo)  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError) as exc:
            if own is not None:
                own.close()
            raise unreadable_tar(self.path, exc) from None
        try:
            with tar:
                for number, info in enumerate(tar, 1):
                    if number > MAX_MEMBERS:
                        raise UnreadableError(
                            f"{self.path}: more than {MAX_MEMBERS} members: not an image tarball"
                        )
                    self._take(tar, info, absorb)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise unreadable_tar(self.path, exc) from None
        finally:
            if own is not None:
                own.close()

    def _take(self, tar: tarfile.TarFile, info: tarfile.TarInfo, absorb: Absorb) -> None:
        name = _clean(info.name)
        if info.issym():
            target = _clean(posixpath.join(posixpath.dirname(name), info.linkname))
            self.members[name] = Entry("link", target=target)
        elif info.islnk():
            self.members[name] = Entry("link", target=_clean(info.linkname))
        elif info.issparse():
            self.members[name] = Entry("sparse")  # no save writes one; refused when used
        elif not info.isfile():
            self.members[name] = Entry("other")
        else:
            entry = Entry("file", info.size)
            self.members[name] = entry
            self._handle = tar.extractfile(info)
            chunks = self.chunks(name)
            head = next(chunks, b"")
            rest = _prepend(head, chunks)
            looks_json = head.lstrip()[:1] in (b"{", b"[")
            small = info.size <= KEEP_SMALL or (looks_json and info.size <= MAX_CONFIG)
            if small and self._kept + info.size <= MAX_KEPT:
                entry.data = b"".join(rest)
                self._kept += info.size
            elif looks_json and info.size <= MAX_CONFIG:
                raise UnreadableError(
                    f"{self.path}: more than {MAX_KEPT >> 20} MiB of JSON members: "
                    "not an image tarball"
                )
            else:
                entry.absorbed = absorb(name, rest)
                for _ in rest:  # whatever absorb left unread
                    pass

    def chunks(self, name: str) -> Iterator[bytes]:
        """The bytes of the member the pass is at (`name`), in pieces."""
        handle = self._handle
        if handle is None:
            raise ArchiveError(f"member {name} cannot be read")
        size = self.members[name].size
        seen = 0
        try:
            for chunk in layerio.read_chunks(handle):
                seen += len(chunk)
                yield chunk
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"member {name} is truncated ({exc})") from None
        if seen != size:
            raise ArchiveError(f"member {name} is truncated ({seen} of {size} bytes)")

    def close(self) -> None:
        self.members.clear()

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def member(self, name: str) -> str:
        """The regular member `name` stands for (links followed); ArchiveError otherwise."""
        current = _clean(name)
        for _ in range(16):
            entry = self.members.get(current)
            if entry is None:
                raise ArchiveError(f"member {current} is missing")
            if entry.kind == "link":
                current = entry.target
            elif entry.kind == "sparse":
                raise ArchiveError(f"member {current} is a sparse file")
            elif entry.kind == "file":
                return current
            else:
                raise ArchiveError(f"member {current} is not a file")
        raise ArchiveError(f"member {name}: too many symlinks")

    def entry(self, name: str) -> Entry:
        return self.members[self.member(name)]

    def read(self, name: str, limit: int = MAX_SMALL) -> bytes:
        entry = self.entry(name)
        if entry.size > limit:
            raise ArchiveError(
                f"member {name} is too large for a json file ({entry.size} bytes, at most {limit})"
            )
        if entry.data is None:
            raise ArchiveError(f"member {name} is not JSON")
        return entry.data

    def json(self, name: str) -> Any:
        return member_json(name, self.read(name))


def _size(handle: IO[bytes] | None) -> int | None:
    """The bytes of an opened regular file (a pipe, stdin: None)."""
    if handle is None:
        return None
    try:
        return os.fstat(handle.fileno()).st_size or None
    except (OSError, ValueError):
        return None


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def member_json(name: str, raw: bytes, kind: type | None = None) -> Any:
    """A JSON member parsed within regtool's bounds; ArchiveError names the member."""
    try:
        doc = parse_json(raw)
    except JsonError as exc:
        raise ArchiveError(f"member {name} is {exc}") from None
    if kind is not None and not isinstance(doc, kind):
        raise ArchiveError(f"member {name} is not a JSON {kind.__name__}")
    return doc


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def named_digest(name: str) -> str | None:
    """The digest a member's name claims: blobs/sha256/<hex> or <hex>.json / <hex>.tar."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[-3] == "blobs" and is_digest(f"{parts[-2]}:{parts[-1]}"):
        return f"{parts[-2]}:{parts[-1]}"
    stem = parts[-1].rsplit(".", 1)[0]
    return f"sha256:{stem}" if is_digest(f"sha256:{stem}") else None
