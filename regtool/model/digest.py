"""Content digests (`algorithm:hex`), validated as distribution 2.8.2 (go-digest 1.0.0) does."""

from __future__ import annotations

import hashlib
import re

# Encoded length per algorithm; go-digest 1.0.0 (Debian's build) accepts lower-case hex only.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)")
_V1_ID = re.compile(r"[a-f0-9]{64}")


class DigestError(ValueError):
    """A string that is not a well-formed digest."""


def parse_digest(text: str) -> str:
    """Return `text` when it is a canonical digest; raise DigestError saying why it is not."""
    match = _DIGEST.fullmatch(text)
    if match is None:
        if text != text.strip():
            raise DigestError("digest has surrounding white space (a trailing newline?)")
        if not text:
            raise DigestError("empty digest")
        if _DIGEST.fullmatch(text.lower()):
            raise DigestError("digest has upper-case hex")
        raise DigestError(f"invalid digest format: {text[:80]!r}")
    if len(match.group(2)) != ALGORITHMS[match.group(1)]:
        raise DigestError(f"invalid digest length: {text[:80]!r}")
    return text


def is_digest(text: str) -> bool:
    try:
        parse_digest(text)
    except DigestError:
        return False
    return True


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, hexpart = digest.partition(":")
    return algorithm, hexpart


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def is_v1_id(text: str) -> bool:
    """A legacy v1 image id: 64 lower-case hex characters."""
    return _V1_ID.fullmatch(text) is not None


def short(ident: str, length: int = 12) -> str:
    """`sha256:abcdef...` or a v1 id, cut to `length` hex characters for tables."""
    _, sep, hexpart = ident.partition(":")
    return hexpart[:length] if sep else ident[:length]
