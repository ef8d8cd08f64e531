"""`regtool ls`: every tag (or repository) with exact, dedup-aware sizes."""

from __future__ import annotations

from dataclasses import dataclass

from regtool.layout.reader import RegistryReader
from regtool.ops.inventory import Inventory, TaggedImage, matches, take_inventory


@dataclass(frozen=True, slots=True)
class TagRow:
    repository: str
    tag: str
    digest: str | None
    media_type: str | None
    platforms: tuple[str, ...]
    size: int
    exclusive: int
    created: str | None
    layers: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    repository: str
    tags: int
    size: int
    exclusive: int
    shared: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Totals:
    """The bytes of all the listed tags' blobs, each blob counted once: `exclusive` is the
    part one tag (with --repos: one repository) alone needs, `shared` the rest."""

    blobs: int
    size: int
    exclusive: int

    @property
    def shared(self) -> int:
        return self.size - self.exclusive


def list_tags(reader: RegistryReader, pattern: str | None = None) -> tuple[TagRow, ...]:
    """One row per tag of the repositories matching `pattern`, sorted by repository and tag.

    size: bytes of the distinct blobs the tag needs (configs and layers, every platform).
    exclusive: the part of size no other tag needs.
    """
    inventory = take_inventory(reader)
    return tag_rows(inventory, pattern)


def list_tags_with_totals(
    reader: RegistryReader, pattern: str | None = None
) -> tuple[tuple[TagRow, ...], Totals]:
    """list_tags, and the totals over the tags it lists."""
    return tag_rows_with_totals(take_inventory(reader), pattern)


def tag_rows_with_totals(
    inventory: Inventory, pattern: str | None = None
) -> tuple[tuple[TagRow, ...], Totals]:
    """The rows and totals of list_tags_with_totals, from an inventory already taken."""
    rows = tag_rows(inventory, pattern)
    # each blob counted once, at the size the last listed tag naming it gives (descriptors
    # may disagree): `users` says which tag that is, without a set of every blob
    listed = [matches(tagged.repository, pattern) for tagged in inventory.tags]
    last_of: dict[str, int] = {}  # blobs several tags need -> the last listed one
    count = size = 0
    for index, tagged in enumerate(inventory.tags):
        if not listed[index]:
            continue
        for blob, blob_size in tagged.blobs.items():
            users = inventory.users[blob]
            if isinstance(users, list):
                last = last_of.get(blob)
                if last is None:
                    last = last_of[blob] = max(i for i in users if listed[i])
            else:
                last = users
            if last == index:
                count += 1
                size += blob_size
    return rows, Totals(count, size, sum(row.exclusive for row in rows))


def tag_rows(inventory: Inventory, pattern: str | None = None) -> tuple[TagRow, ...]:
    rows = []
    for tagged in inventory.tags:
        if not matches(tagged.repository, pattern):
            continue
        blobs = tagged.blobs
        needs = tagged.needs
        rows.append(
            TagRow(
                repository=tagged.repository,
                tag=tagged.tag,
                digest=tagged.digest,
                media_type=needs.media_type if needs else None,
                platforms=needs.platforms if needs else (),
                size=sum(blobs.values()),
                exclusive=sum(s for b, s in blobs.items() if inventory.exclusive_to_one_tag(b)),
                created=needs.created if needs else None,
                layers=needs.layers if needs else 0,
                warnings=tuple(str(issue) for issue in tagged.issues),
            )
        )
    rows.sort(key=lambda row: (row.repository, row.tag))
    return tuple(rows)


def list_repositories(
    reader: RegistryReader, pattern: str | None = None
) -> tuple[RepositoryRow, ...]:
    """One row per repository (empty ones too): size of all its tags' distinct blobs,
    exclusive = needed by no other repository, shared = the rest."""
    return list_repositories_with_totals(reader, pattern)[0]


def list_repositories_with_totals(
    reader: RegistryReader, pattern: str | None = None
) -> tuple[tuple[RepositoryRow, ...], Totals]:
    """list_repositories, and the totals over the repositories it lists."""
    return repository_rows_with_totals(take_inventory(reader), pattern)


def repository_rows_with_totals(
    inventory: Inventory, pattern: str | None = None
) -> tuple[tuple[RepositoryRow, ...], Totals]:
    """The rows and totals of list_repositories_with_totals, from an inventory already taken
    (the server's summary takes one and derives both listings from it)."""
    owners: dict[str, set[str]] = {}
    needs: dict[str, dict[str, int]] = {}
    by_repo: dict[str, list[TaggedImage]] = {}
    for tagged in inventory.tags:
        by_repo.setdefault(tagged.repository, []).append(tagged)
        blobs = tagged.blobs
        needs.setdefault(tagged.repository, {}).update(blobs)
        for blob in blobs:
            owners.setdefault(blob, set()).add(tagged.repository)
    for blob, holders in inventory.held.items():  # untagged manifests a plain gc keeps
        if blob in owners:
            owners[blob] |= holders
    rows = []
    listed: dict[str, int] = {}
    for repo in inventory.repositories:
        if not matches(repo.name, pattern):
            continue
        listed.update(needs.get(repo.name, {}))
        tags = by_repo.get(repo.name, [])
        blobs = needs.get(repo.name, {})
        size = sum(blobs.values())
        exclusive = sum(s for blob, s in blobs.items() if len(owners[blob]) == 1)
        warnings = [str(issue) for issue in repo.issues]
        warnings.extend(str(issue) for tagged in tags for issue in tagged.issues)
        rows.append(
            RepositoryRow(repo.name, len(tags), size, exclusive, size - exclusive, tuple(warnings))
        )
    exclusive_total = sum(row.exclusive for row in rows)
    return tuple(rows), Totals(len(listed), sum(listed.values()), exclusive_total)
