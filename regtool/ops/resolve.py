"""Turn a user's REF into a stored repository and digest, with helpful errors.

Every command that takes a REF goes through `locate` or `resolve_reference`: a registry
host in front is ignored (`127.0.0.1:5443/centos:httpd`), a short digest as `ls` prints it
(`centos@ac8f23afd907`) is expanded among the repository's manifests. `check_pattern` is
the same for a glob over repository names (exit 1 when it matches nothing).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from regtool.errors import BadReferenceError, NoMatchError, UnknownReferenceError
from regtool.layout.reader import RegistryReader
from regtool.model.reference import (
    DEFAULT_TAG,
    Reference,
    ReferenceError_,
    parse_reference,
    split_host,
)
from regtool.ops.inventory import LIBRARY, matches, short_name

MAX_SUGGESTIONS = 3


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
        raise _unknown(ref.repository, [short_name(n) for n in names], "repository")
    if ref.short_digest is not None:
        ref = replace(ref, digest=expand_digest(reader, repository, ref.short_digest))
    return ref, repository


def expand_digest(reader: RegistryReader, repository: str, prefix: str) -> str:
    """The one manifest digest of `repository` starting with `prefix` (`sha256:<hex>`).

    Ambiguous: BadReferenceError listing the candidates; none: the unknown-manifest error."""
    wanted = prefix.partition(":")[2]
    candidates = sorted(
        d for d in _manifest_digests(reader, repository) if _hex(d).startswith(wanted)
    )
    if len(candidates) == 1:
        return candidates[0]
    name = short_name(repository)
    if not candidates:
        raise UnknownReferenceError(f"{name} has no manifest {prefix}")
    raise BadReferenceError(
        f"{name}@{prefix.partition(':')[2]} is ambiguous: {', '.join(candidates)}",
        hint="give more of the digest",
    )


def _hex(digest: str) -> str:
    """The hex of a digest (a v1 image id is hex alone)."""
    return digest.partition(":")[2] or digest


def _manifest_digests(reader: RegistryReader, repository: str) -> set[str]:
    """Every manifest the repository holds (v2: its revisions; v1: its tags' images)."""
    revisions = getattr(reader, "revisions", None)
    if revisions is not None:
        return {digest for _, digest, _ in revisions(repository) if digest is not None}
    return {link.digest for link in reader.tags(repository) if link.digest is not None}


def check_pattern(reader: RegistryReader, pattern: str | None) -> str | None:
    """`pattern` (a glob over repository names; a registry host in front dropped) when some
    repository matches it; NoMatchError (exit 1) with at most 3 close names otherwise."""
    if pattern is None:
        return None
    pattern = split_host(pattern)[1]
    names = [repo.name for repo in reader.repositories()]
    if any(matches(name, pattern) for name in names):
        return pattern
    close = _close(pattern, sorted({short_name(n) for n in names}))
    hint = f"did you mean: {', '.join(close)}" if close else "`regtool ls` lists them all"
    raise NoMatchError(f"no repository matches {pattern!r}", hint=hint if names else None)


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


def _close(asked: str, candidates: list[str]) -> list[str]:
    return difflib.get_close_matches(asked, candidates, n=MAX_SUGGESTIONS, cutoff=0.5)


def _unknown(asked: str, candidates: list[str], what: str) -> UnknownReferenceError:
    close = _close(asked, candidates)
    if close:
        hint = f"did you mean: {', '.join(close)}"
    elif candidates:
        hint = "`regtool ls` lists them all"
        if what == "tag":
            hint = f"`regtool ls {asked.rpartition(':')[0]}` lists its tags"
    else:
        hint = "the storage has none" if what == "repository" else "it has no tags"
    return UnknownReferenceError(f"unknown {what}: {asked}", hint=hint)
