"""Random access to the members of an image tarball, streamed, symlinks followed.

Nothing is ever extracted: member names (`../../etc/passwd`, absolute paths) and symlink or
hardlink members only ever name other members of the same archive. A tar with more than
MAX_MEMBERS members, or a JSON member over its cap, is refused before it is read whole.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regtool.errors import UnreadableError
from regtool.model.digest import is_digest
from regtool.model.jsondoc import JsonError, parse_json
from regtool.ops import layerio

MAX_SMALL = 4 << 20  # manifest.json, index.json, manifests, v1 jsons: distribution's cap
MAX_CONFIG = 8 << 20  # image configs (what `ls` and `verify` read at most)
MAX_MEMBERS = 100_000  # a save of hundreds of images has a few thousand
MAX_HEADER = 1 << 20  # pax or GNU long-name headers (tarfile reads them whole)
_EXTENDED = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


def unreadable_tar(path: Path, exc: BaseException) -> UnreadableError:
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


class Archive:
    """A tar file opened for random access to its members (symlinks followed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*", tarinfo=_BoundedInfo)  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise unreadable_tar(path, exc) from None
        try:
            self.members = self._list()
        except BaseException:
            self.tar.close()
            raise

    def _list(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        try:
            for number, info in enumerate(self.tar, 1):
                if number > MAX_MEMBERS:
                    raise UnreadableError(
                        f"{self.path}: more than {MAX_MEMBERS} members: not an image tarball"
                    )
                members[_clean(info.name)] = info
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise unreadable_tar(self.path, exc) from None
        return members

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def member(self, name: str) -> tarfile.TarInfo:
        current = _clean(name)
        for _ in range(16):
            info = self.members.get(current)
            if info is None:
                raise ArchiveError(f"member {current} is missing")
            if info.issym():
                current = _clean(posixpath.join(posixpath.dirname(current), info.linkname))
            elif info.islnk():
                current = _clean(info.linkname)
            elif info.issparse():
                raise ArchiveError(f"member {current} is a sparse file")  # no save writes one
            elif info.isfile():
                return info
            else:
                raise ArchiveError(f"member {current} is not a file")
        raise ArchiveError(f"member {name}: too many symlinks")

    def chunks(self, name: str) -> Iterator[bytes]:
        info = self.member(name)
        handle = self.tar.extractfile(info)
        if handle is None:
            raise ArchiveError(f"member {name} cannot be read")
        seen = 0
        try:
            for chunk in layerio.read_chunks(handle):
                seen += len(chunk)
                yield chunk
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"member {name} is truncated ({exc})") from None
        if seen != info.size:
            raise ArchiveError(f"member {name} is truncated ({seen} of {info.size} bytes)")

    def read(self, name: str, limit: int = MAX_SMALL) -> bytes:
        info = self.member(name)
        if info.size > limit:
            raise ArchiveError(
                f"member {name} is too large for a json file ({info.size} bytes, at most {limit})"
            )
        return b"".join(self.chunks(name))

    def json(self, name: str) -> Any:
        return member_json(name, self.read(name))


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
