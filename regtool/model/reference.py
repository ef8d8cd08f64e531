"""Image references: `[host/]name[:tag][@digest]`, with distribution's name and tag grammar.

People paste references as they pull them: `127.0.0.1:5443/centos:httpd`,
`registry.example.com/team/app:v1`, `localhost/app`. The first path element is a registry
host when it holds a `.` or a `:` or is `localhost` (as docker decides); it is kept aside in
`host` (a local storage has no use for it). A digest may be cut short as `ls` prints it
(`centos@ac8f23afd907`, at least 12 hex): `short_digest` then holds `sha256:<prefix>` and
the storage expands it (ops/resolve.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regtool.model.digest import DigestError, parse_digest

# The OCI distribution spec's grammar. Every separator is at least one character and none is
# a letter or digit, so each character has one place in a match: linear time on any input
# (distribution's `[-]*` form lets a separator match nothing and backtracks exponentially).
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
SHORT_DIGEST_RE = re.compile(r"(?:sha256:)?([a-f0-9]{12,63})")
MIN_SHORT_DIGEST = 12
MAX_NAME_LENGTH = 255
DEFAULT_TAG = "latest"


class ReferenceError_(ValueError):  # noqa: N801 - avoid shadowing the builtin ReferenceError
    """A reference string that does not parse."""


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


@dataclass(frozen=True, slots=True)
class Reference:
    repository: str
    tag: str | None = None
    digest: str | None = None
    host: str | None = None  # the registry host typed in front, if any
    short_digest: str | None = None  # `sha256:<12+ hex>` to expand (digest is None then)

    @property
    def target(self) -> str:
        """The tag or digest this reference asks for (tag `latest` when neither was given)."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        if self.short_digest and not self.digest:
            return f"{self.repository}@{self.short_digest}"
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"


def split_host(text: str) -> tuple[str | None, str]:
    """(`host`, rest) when the first path element of `text` is a registry host, else
    (None, text): it holds a `.` or `:`, or is `localhost`."""
    first, slash, rest = text.partition("/")
    if slash and rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, text


def parse_reference(text: str) -> Reference:
    """Parse `[host/]name`, `name:tag`, `name@sha256:...` or `name@<12+ hex>` (a
    `name:tag@digest` keeps the digest)."""
    host, rest = split_host(text)
    name, at, digest = rest.partition("@")
    short_digest = None
    if at:
        try:
            parse_digest(digest)
        except DigestError as exc:
            match = SHORT_DIGEST_RE.fullmatch(digest)
            if match is None:
                hexpart = digest.removeprefix("sha256:")
                if (
                    hexpart
                    and len(hexpart) < MIN_SHORT_DIGEST
                    and all(c in "0123456789abcdef" for c in hexpart)
                ):
                    raise ReferenceError_(
                        f"{text!r}: a short digest needs at least {MIN_SHORT_DIGEST} hex digits"
                    ) from None
                raise ReferenceError_(f"{text!r}: {exc}") from None
            short_digest = f"sha256:{match.group(1)}"
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not valid_tag(tag):
            raise ReferenceError_(f"{text!r}: invalid tag {tag!r}")
    if not valid_name(name):
        raise ReferenceError_(
            f"{text!r}: invalid repository name (lower-case letters, digits, '.', '_', '-', '/')"
        )
    if short_digest is not None:
        return Reference(name, tag, None, host, short_digest)
    return Reference(name, tag, digest if at else None, host)
