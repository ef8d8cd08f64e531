"""Every tag, what it points to, and which tags need each blob: the shared basis of ls/layers.

On a large tree the tags are resolved by two or more worker processes (fork), each over
its own share of the repositories; they send back compact summaries, not whole images.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import multiprocessing
import os
from array import array
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from regtool.layout.reader import Issue, RegistryReader, Repository, Resolved
from regtool.model.references import Node, node_of, retained

LIBRARY = "library/"
PARALLEL_MIN_REPOSITORIES = 256
MAX_WORKERS = 4
CHUNK_REPOSITORIES = 256  # a worker's results wait whole in the parent: keep them small


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
    blob_ids: tuple[str, ...]  # distinct blobs (configs + layers), see `blobs`
    # their sizes, 8 bytes each (no int object per blob and manifest); a tuple when one is
    # past what 8 bytes hold (a hostile manifest)
    blob_sizes: bytes | tuple[int, ...]
    issues: tuple[Issue, ...]

    @property
    def blobs(self) -> dict[str, int]:
        """Distinct blobs (configs + layers) -> size."""
        sizes = self.blob_sizes
        if isinstance(sizes, bytes):
            return dict(zip(self.blob_ids, array("q", sizes), strict=True))
        return dict(zip(self.blob_ids, sizes, strict=True))


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
    # blob id -> index into `tags` of the one tag that needs it, or the indexes of all of
    # them when several do (most blobs have one user: no list for them); see `users_of`
    users: dict[str, int | list[int]] = field(repr=False)
    # blob id -> repositories whose untagged manifests hold it (a plain gc keeps them), for
    # the blobs some tag needs
    held: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def users_of(self, blob: str) -> list[int]:
        """Indexes into `tags` of the tags that need `blob`."""
        found = self.users.get(blob)
        if found is None:
            return []
        return [found] if isinstance(found, int) else found

    def exclusive_to_one_tag(self, blob: str) -> bool:
        """Whether removing the one tag that needs `blob` would let a plain gc free it."""
        return isinstance(self.users.get(blob), int) and blob not in self.held

    def labels_using(self, blob: str) -> list[str]:
        return [self.tags[i].label for i in self.users_of(blob)]


def summarize(resolved: Resolved) -> Needs:
    layer_ids = {layer.id for image in resolved.images for layer in image.layers}
    return Needs(
        media_type=resolved.media_type or None,
        platforms=resolved.platforms,
        created=resolved.created,
        layers=len(layer_ids),
        issues=resolved.issues,
        **compact(resolved.blobs()),
    )


def compact(blobs: dict[str, int]) -> dict[str, Any]:
    """`Needs` fields for the blobs -> size mapping `blobs`."""
    sizes: bytes | tuple[int, ...]
    try:
        sizes = array("q", blobs.values()).tobytes()
    except OverflowError:
        sizes = tuple(blobs.values())
    return {"blob_ids": tuple(blobs), "blob_sizes": sizes}


# blob -> the repository whose untagged manifests hold it, or the set of them when several
# do (most such blobs are held by one: no set for them)
Held = dict[str, str | set[str]]
# (repository, tag, digest, issue) per tag, digest -> Needs, and what untagged manifests hold
Scan = tuple[list[tuple[str, str, str | None, Issue | None]], dict[str, Needs], Held]


def _hold(held: Held, blob: str, holders: str | set[str]) -> None:
    found = held.get(blob)
    if found is None:
        held[blob] = holders if isinstance(holders, str) else set(holders)
    elif isinstance(found, str):
        if found != holders:
            held[blob] = {found} | ({holders} if isinstance(holders, str) else holders)
    elif isinstance(holders, str):
        found.add(holders)
    else:
        found.update(holders)


def _scan(reader: RegistryReader, names: list[str], intern: _Interned | None = None) -> Scan:
    """Tags of `names`, the needs of every digest they point to, and the blobs their
    repositories' untagged manifests hold.

    What the reader parsed for a repository is dropped when done with it, and every blob
    digest is kept once (`_Interned`): memory grows with the distinct blobs, not with the
    manifests read."""
    tags: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    held: Held = {}
    intern = _Interned() if intern is None else intern
    forget = getattr(reader, "forget", None)
    for name in names:
        roots = []
        for link in reader.tags(name):
            tags.append((name, link.tag, link.digest, link.issue))
            if link.digest is not None:
                roots.append(link.digest)
                if link.digest not in needs:
                    resolved = reader.resolve(name, link.digest, detail=False)
                    needs[link.digest] = intern.needs(summarize(resolved))
        for digest in _untagged(reader, name, roots):
            for blob in summarize(reader.resolve(name, digest, detail=False)).blob_ids:
                _hold(held, intern(blob), name)
        if forget is not None:
            forget()
    return tags, needs, held


class _Interned(dict[str, str]):
    """One string object per distinct digest (manifests name the same blobs many times;
    each parsed or unpickled copy would otherwise be kept)."""

    def __call__(self, digest: str) -> str:
        return self.setdefault(digest, digest)

    def needs(self, needs: Needs) -> Needs:
        blob_ids = tuple(self.setdefault(blob, blob) for blob in needs.blob_ids)
        media_type = needs.media_type
        if media_type is not None:
            media_type = self.setdefault(media_type, media_type)
        return dataclasses.replace(needs, media_type=media_type, blob_ids=blob_ids)


def _untagged(reader: RegistryReader, name: str, roots: list[str]) -> list[str]:
    """The manifests of `name` that a plain gc keeps though no tag needs them: stored
    revisions no tag reaches (through index children) and that are no referrer of what a
    tag reaches (those go with their subject). v1 has none: gc frees untagged images."""
    revisions = getattr(reader, "revisions", None)
    if revisions is None:
        return []
    stored = [digest for _, digest, _ in revisions(name) if digest is not None]

    def load(digest: str) -> Node | None:
        manifest = reader.manifest(digest)  # type: ignore[attr-defined]
        return None if isinstance(manifest, Issue) else node_of(manifest)

    kept = retained(roots, stored, load)
    return [digest for digest in stored if digest not in kept]


_WORKER_READER: RegistryReader | None = None


def _scan_in_worker(names: list[str]) -> tuple[list[tuple], dict[str, tuple], Held]:
    """A worker's share, as plain tuples: they pickle several times faster than dataclasses."""
    assert _WORKER_READER is not None
    tags, needs, held = _scan(_WORKER_READER, names)
    return tags, {digest: _as_tuple(n) for digest, n in needs.items()}, held


def _as_tuple(needs: Needs) -> tuple:
    return (
        needs.media_type,
        needs.platforms,
        needs.created,
        needs.layers,
        needs.blob_ids,
        needs.blob_sizes,
        needs.issues,
    )


def _parallel_scan(reader: RegistryReader, names: list[str], workers: int) -> Scan:
    global _WORKER_READER
    _WORKER_READER = reader
    size = max(1, min(CHUNK_REPOSITORIES, len(names) // (workers * 4)))
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    tags: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    held: Held = {}
    intern = _Interned()
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for chunk_tags, chunk_needs, chunk_held in pool.map(_scan_in_worker, chunks):
                tags.extend(chunk_tags)
                for blob, holders in chunk_held.items():
                    _hold(held, intern(blob), holders)
                for digest, fields in chunk_needs.items():
                    needs[digest] = intern.needs(Needs(*fields))
    finally:
        _WORKER_READER = None
    return tags, needs, held


def _streamed_scan(
    windows: Iterator[tuple[list[Repository], RegistryReader]],
) -> tuple[
    tuple[Repository, ...],
    list[tuple[str, str, str | None, Issue | None]],
    dict[str, Needs],
    Held,
]:
    """Each window's repositories scanned with the window's own reader, in name order at
    the end (windows come in key order: `a/0b` lists before `a`)."""
    repositories: list[Repository] = []
    scanned: list[tuple[str, str, str | None, Issue | None]] = []
    needs: dict[str, Needs] = {}
    held: Held = {}
    intern = _Interned()
    for repos, reader in windows:
        repositories.extend(repos)
        tags, found, holding = _scan(reader, [repo.name for repo in repos], intern)
        scanned.extend(tags)
        for blob, holders in holding.items():
            _hold(held, blob, holders)
        for digest, need in found.items():
            needs.setdefault(digest, need)
    repositories.sort(key=lambda repo: repo.name)
    scanned.sort(key=lambda row: row[0])  # stable: tags keep their order in a repository
    return tuple(repositories), scanned, needs, held


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
        repositories, scanned, needs, held = _streamed_scan(streamed)
    else:
        repositories = tuple(reader.repositories())
        names = [repo.name for repo in repositories]
        reader.prefetch()
        workers = _workers(len(names), reader)
        if workers > 1:
            scanned, needs, held = _parallel_scan(reader, names, workers)
        else:
            scanned, needs, held = _scan(reader, names)
    tagged: list[TaggedImage] = []
    users: dict[str, int | list[int]] = {}
    for repository, tag, digest, issue in scanned:
        known = needs.get(digest) if digest is not None else None
        if known is None:
            tagged.append(TaggedImage(repository, tag, digest, None, (issue,) if issue else ()))
            continue
        index = len(tagged)
        tagged.append(TaggedImage(repository, tag, digest, known, known.issues))
        for blob in known.blob_ids:
            found = users.get(blob)
            if found is None:
                users[blob] = index
            elif isinstance(found, int):
                users[blob] = [found, index]
            else:
                found.append(index)
    kept = {  # only what some tag needs too matters (see Inventory.held)
        blob: {holders} if isinstance(holders, str) else holders
        for blob, holders in held.items()
        if blob in users
    }
    del held
    return Inventory(reader.layout, repositories, tuple(tagged), users, kept)
