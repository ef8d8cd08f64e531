"""Turn a user's REF into a stored repository and digest, with helpful errors."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from regtool.errors import BadReferenceError, UnknownReferenceError
from regtool.layout.reader import RegistryReader
from regtool.model.reference import DEFAULT_TAG, Reference, ReferenceError_, parse_reference
from regtool.ops.inventory import LIBRARY, short_name


@dataclass(frozen=True, slots=True)
class Target:
    repository: str  # stored name
    tag: str | None
    digest: str

    @property
    def label(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else f"{self.repository}@{self.digest}"


def find_repository(names: list[str], wanted: str) -> str | None:
    """The stored name for `wanted`: exact, else with or without `library/`."""
    stored = set(names)
    for candidate in (wanted, LIBRARY + wanted, short_name(wanted)):
        if candidate in stored:
            return candidate
    return None


def locate(reader: RegistryReader, text: str) -> tuple[Reference, str]:
    """Parse a REF and find its stored repository; errors suggest close names."""
    try:
        ref = parse_reference(text)
    except ReferenceError_ as exc:
        raise BadReferenceError(str(exc)) from None
    names = [repo.name for repo in reader.repositories()]
    repository = find_repository(names, ref.repository)
    if repository is None:
        raise _unknown(text, [short_name(n) for n in names], "repository")
    return ref, repository


def resolve_reference(reader: RegistryReader, text: str) -> Target:
    """REPO[:TAG] or REPO@DIGEST (no tag means latest) to a stored repository and digest."""
    ref, repository = locate(reader, text)
    if ref.digest:
        if not reader.has_manifest(repository, ref.digest):
            raise UnknownReferenceError(f"{repository} has no manifest {ref.digest}")
        return Target(repository, None, ref.digest)
    tag = ref.tag or DEFAULT_TAG
    links = reader.tags(repository)
    for link in links:
        if link.tag == tag:
            if link.digest is None:
                detail = link.issue.message if link.issue else "unreadable"
                raise UnknownReferenceError(f"tag {repository}:{tag} is broken: {detail}")
            return Target(repository, tag, link.digest)
    labels = [f"{short_name(repository)}:{link.tag}" for link in links]
    raise _unknown(f"{short_name(repository)}:{tag}", labels, "tag")


def _unknown(asked: str, candidates: list[str], what: str) -> UnknownReferenceError:
    close = difflib.get_close_matches(asked, candidates, n=5, cutoff=0.5)
    if not close:
        close = sorted(candidates)[:5]
    hint = f"did you mean: {', '.join(close)}" if close else "the storage has none"
    return UnknownReferenceError(f"unknown {what}: {asked}", hint=hint)
