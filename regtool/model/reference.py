"""Image references: `name[:tag][@digest]`, with distribution's name and tag grammar."""

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

    @property
    def target(self) -> str:
        """The tag or digest this reference asks for (tag `latest` when neither was given)."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"


def parse_reference(text: str) -> Reference:
    """Parse `name`, `name:tag` or `name@sha256:...` (a `name:tag@digest` keeps the digest)."""
    name, at, digest = text.partition("@")
    if at:
        try:
            parse_digest(digest)
        except DigestError as exc:
            raise ReferenceError_(f"{text!r}: {exc}") from None
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
    return Reference(repository=name, tag=tag, digest=digest if at else None)
