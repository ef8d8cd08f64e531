"""Every tag, what it points to, and which tags need each blob: the shared basis of ls/layers.

On a large tree the tags are resolved by two or more worker processes (fork), each over
its own share of the repositories; they send back compact summaries, not whole images.
"""

from __future__ import annotations

import fnmatch
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from regtool.layout.reader import Issue, RegistryReader, Repository, Resolved

LIBRARY = "library/"
PARALLEL_MIN_REPOSITORIES = 256
MAX_WORKERS = 4


def short_name(name: str) -> str:
    """`library/centos` as docker shows it: `centos`."""
    return name[len(LIBRARY) :] if name.startswith(LIBRARY) else name


def matches(name: str, pattern: str | None) -> bool:
    """Glob over repository names, in the stored form or the short `library/`-less form."""
    if pattern is None:
        return True
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short_name(name), pattern)


@dataclass(frozen=True, slots=True)
class Needs:
    """What one manifest digest needs and says about itself, without layer details."""

    media_type: str | None
    platforms: tuple[str, ...]
    created: str | None
    layers: int  # distinct layer blobs, every platform
    blobs: dict[str, int]  # distinct blobs (configs + layers) -> size
    issues: tuple[Issue, ...]


@dataclass(frozen=True, slots=True)
class TaggedImage:
    repository: str
    tag: str
    digest: str | None
    needs: Needs | None
    issues: tuple[Issue, ...]

    @property
    def label(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def blobs(self) -> dict[str, int]:
        return self.needs.blobs if self.needs is not None else {}


@dataclass(frozen=True)
class Inventory:
    layout: str
    repositories: tuple[Repository, ...]
    tags: tuple[TaggedImage, ...]
    # blob id -> indexes into `tags` of the tags that need it
    users: dict[str, list[int]] = field(repr=False)

    def labels_using(self, blob: str) -> list[str]:
        return [self.tags[i].label for i in self.users.get(blob, ())]


def summarize(resolved: Resolved) -> Needs:
    layer_ids = {layer.id for image in resolved.images for layer in image.layers}
    return Needs(
        media_type=resolved.media_type or None,
        platforms=resolved.platforms,
        created=resolved.created,
        layers=len(layer_ids),
        blobs=resolved.blobs(),
        issues=resolved.issues,
    )


# (repository, tag, digest, issue) per tag, and digest -> Needs
Scan = tuple[list[tuple[str, str, str | None, Issue | None]], dict[str, Needs]]


def _scan(reader: RegistryReader, names: list[str]) -> Scan:
    """Tags of `names` and the needs of every digest they point to."""
    tags: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    for name in names:
        for link in reader.tags(name):
            tags.append((name, link.tag, link.digest, link.issue))
            if link.digest is not None and link.digest not in needs:
                needs[link.digest] = summarize(reader.resolve(name, link.digest, detail=False))
    return tags, needs


_WORKER_READER: RegistryReader | None = None


def _scan_in_worker(names: list[str]) -> tuple[list[tuple], dict[str, tuple]]:
    """A worker's share, as plain tuples: they pickle several times faster than dataclasses."""
    assert _WORKER_READER is not None
    tags, needs = _scan(_WORKER_READER, names)
    return tags, {digest: _as_tuple(n) for digest, n in needs.items()}


def _as_tuple(needs: Needs) -> tuple:
    return (
        needs.media_type,
        needs.platforms,
        needs.created,
        needs.layers,
        needs.blobs,
        needs.issues,
    )


def _parallel_scan(reader: RegistryReader, names: list[str], workers: int) -> Scan:
    global _WORKER_READER
    _WORKER_READER = reader
    size = max(1, len(names) // (workers * 4))
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    tags: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for chunk_tags, chunk_needs in pool.map(_scan_in_worker, chunks):
                tags.extend(chunk_tags)
                for digest, fields in chunk_needs.items():
                    needs[digest] = Needs(*fields)
    finally:
        _WORKER_READER = None
    return tags, needs


def _streamed_scan(
    windows: Iterator[tuple[list[Repository], RegistryReader]],
) -> tuple[tuple[Repository, ...], list[tuple[str, str, str | None, Issue | None]], dict]:
    """Each window's repositories scanned with the window's own reader, in name order at
    the end (windows come in key order: `a/0b` lists before `a`)."""
    repositories: list[Repository] = []
    scanned: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    for repos, reader in windows:
        repositories.extend(repos)
        tags, found = _scan(reader, [repo.name for repo in repos])
        scanned.extend(tags)
        for digest, need in found.items():
            needs.setdefault(digest, need)
    repositories.sort(key=lambda repo: repo.name)
    scanned.sort(key=lambda row: row[0])  # stable: tags keep their order in a repository
    return tuple(repositories), scanned, needs


def _workers(repositories: int, reader: RegistryReader) -> int:
    if repositories < PARALLEL_MIN_REPOSITORIES or not hasattr(os, "fork"):
        return 1
    if not reader.driver.forks:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def take_inventory(reader: RegistryReader) -> Inventory:
    """Resolve every tag of every repository (each manifest digest once)."""
    streamed = reader.windows(configs=True)
    if streamed is not None:  # an object store: a window of repositories at a time
        repositories, scanned, needs = _streamed_scan(streamed)
    else:
        repositories = tuple(reader.repositories())
        names = [repo.name for repo in repositories]
        reader.prefetch()
        workers = _workers(len(names), reader)
        if workers > 1:
            scanned, needs = _parallel_scan(reader, names, workers)
        else:
            scanned, needs = _scan(reader, names)
    tagged: list[TaggedImage] = []
    users: dict[str, list[int]] = {}
    for repository, tag, digest, issue in scanned:
        known = needs.get(digest) if digest is not None else None
        if known is None:
            tagged.append(TaggedImage(repository, tag, digest, None, (issue,) if issue else ()))
            continue
        index = len(tagged)
        tagged.append(TaggedImage(repository, tag, digest, known, known.issues))
        for blob in known.blobs:
            if blob in users:
                users[blob].append(index)
            else:
                users[blob] = [index]
    return Inventory(reader.layout, repositories, tuple(tagged), users)
