"""Every tag, what it points to, and which tags need each blob: the shared basis of ls/layers."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from regtool.layout.reader import Issue, RegistryReader, Repository, Resolved

LIBRARY = "library/"


def short_name(name: str) -> str:
    """`library/centos` as docker shows it: `centos`."""
    return name[len(LIBRARY) :] if name.startswith(LIBRARY) else name


def matches(name: str, pattern: str | None) -> bool:
    """Glob over repository names, in the stored form or the short `library/`-less form."""
    if pattern is None:
        return True
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short_name(name), pattern)


@dataclass(frozen=True, slots=True)
class TaggedImage:
    repository: str
    tag: str
    digest: str | None
    resolved: Resolved | None
    issues: tuple[Issue, ...]
    blobs: dict[str, int]  # distinct blobs the tag needs -> size (shared between equal digests)

    @property
    def label(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Inventory:
    layout: str
    repositories: tuple[Repository, ...]
    tags: tuple[TaggedImage, ...]
    # blob id -> indexes into `tags` of the tags that need it
    users: dict[str, list[int]] = field(repr=False)

    def labels_using(self, blob: str) -> list[str]:
        return [self.tags[i].label for i in self.users.get(blob, ())]


def take_inventory(reader: RegistryReader) -> Inventory:
    """Resolve every tag of every repository once (manifests are read once per digest)."""
    repositories = tuple(reader.repositories())
    tagged: list[TaggedImage] = []
    users: dict[str, list[int]] = {}
    seen: dict[str, tuple[Resolved, dict[str, int]]] = {}
    for repo in repositories:
        for link in reader.tags(repo.name):
            if link.digest is None:
                issues = (link.issue,) if link.issue else ()
                tagged.append(TaggedImage(repo.name, link.tag, None, None, issues, {}))
                continue
            known = seen.get(link.digest)
            if known is None:
                resolved = reader.resolve(repo.name, link.digest, detail=False)
                known = seen[link.digest] = (resolved, resolved.blobs())
            resolved, blobs = known
            index = len(tagged)
            tagged.append(
                TaggedImage(repo.name, link.tag, link.digest, resolved, resolved.issues, blobs)
            )
            for blob in blobs:
                if blob in users:
                    users[blob].append(index)
                else:
                    users[blob] = [index]
    return Inventory(reader.layout, repositories, tuple(tagged), users)
