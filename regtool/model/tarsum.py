"""tarsum v0 (`tarsum+sha256:`), as the legacy Python registry computed it (v1-layout.md §3.2).

Each tar member is hashed as its header fields (name, mode, uid, gid, size, mtime, typeflag,
linkname, uname, gname, devmajor, devminor, concatenated as key+value) followed by its body;
the sorted member hashes are hashed after the image json. The layer may be plain, gzip, bzip2
or xz: it is read as a stream, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO

PREFIX = "tarsum+sha256:"
_CHUNK = 1 << 20


class TarsumError(ValueError):
    """The layer is not a tar stream tarsum can read."""


def member_header(info: tarfile.TarInfo) -> bytes:
    """The header string of one member; directories get back the `/` tarfile strips."""
    name = info.name + "/" if info.isdir() and not info.name.endswith("/") else info.name
    fields = (
        ("name", name),
        ("mode", info.mode),
        ("uid", info.uid),
        ("gid", info.gid),
        ("size", info.size),
        ("mtime", int(info.mtime)),
        ("typeflag", info.type.decode("ascii")),
        ("linkname", info.linkname),
        ("uname", info.uname),
        ("gname", info.gname),
        ("devmajor", info.devmajor),
        ("devminor", info.devminor),
    )
    return "".join(f"{key}{value}" for key, value in fields).encode()


def tarsum_v0(json_bytes: bytes, layer: BinaryIO) -> str:
    """`tarsum+sha256:<hex>` of a layer stream (any compression tarfile knows) and its json."""
    hashes = []
    try:
        with tarfile.open(fileobj=layer, mode="r|*") as tar:
            for info in tar:
                member = hashlib.sha256(member_header(info))
                if info.isfile() and info.size > 0:
                    body = tar.extractfile(info)
                    if body is not None:
                        while chunk := body.read(_CHUNK):
                            member.update(chunk)
                hashes.append(member.hexdigest())
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise TarsumError(str(exc) or type(exc).__name__) from None
    return PREFIX + hashlib.sha256(json_bytes + "".join(sorted(hashes)).encode()).hexdigest()
