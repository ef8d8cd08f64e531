"""gc on a distribution v2 tree: mark from every revision and tag, recursively; sweep the rest.

Roots are the revision links and tag `current/link`s of every repository (a folder holding
`_layers` or `_manifests`), read by their content. Marking follows index children to any
depth (distribution 2.8.2 stops after one level: its bug #3178), and with
`delete_untagged` a manifest no tag reaches is dropped unless a kept index lists it or its
`subject` is kept. Blobs are walked by listing folders only; a blob's files are looked at
just when it is not marked (the sweep itself is in `gc_v2_sweep.py`).

No link inside the tree is followed: a folder or file that is a link is neither read nor
deleted, and is listed in the plan (see `judge_foreign` for when one refuses the plan).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from regtool.layout.reader import Issue
from regtool.layout.v2 import bulk, paths
from regtool.layout.v2.reader import MAX_LINK_BYTES, V2Reader
from regtool.model.digest import ALGORITHMS, DigestError, parse_digest
from regtool.model.manifest import (
    MAX_MANIFEST_BYTES,
    ManifestError,
    parse_manifest,
)
from regtool.model.references import Node, node_of, retained
from regtool.ops.gc import GcEntry, GcOptions, GcPlan, judge_foreign
from regtool.ops.gc_io import hex_key, key, quick_node, run_parts, split, worker_count
from regtool.ops.gc_marks import Marks
from regtool.ops.gc_v2_sweep import RepoState, Sweeper
from regtool.storage.driver import ForeignObjectError, PathNotFound, StorageDriver, StorageError

SHA256 = "sha256"
T = TypeVar("T")


class V2Collector(Sweeper):
    push_times = False  # whether scan_tags keeps each tag link's mtime (RepoState.pushed)

    def __init__(
        self, reader: V2Reader, options: GcOptions, now: float, exact: bool = False
    ) -> None:
        self.exact = exact
        self.foreign_links: set[str] = set()  # links not read: a link or FIFO on the way
        self.driver: StorageDriver = reader.driver
        self.files = reader.driver.scanner()
        self.reader = reader
        self.options = options
        self.now = now
        self.cutoff = now - options.grace if options.grace > 0 else None
        self.upload_cutoff = now - options.upload_age
        self.problems: dict[str, Issue] = {}
        self.warnings: list[Issue] = []
        self.nodes: dict[str, Node | None] = {}  # of the repository being marked
        self.marked = Marks()  # what is in use
        self.visited: set[bytes | str] = set()  # keys of manifests whose references are marked
        self.aliases: set[tuple[str, str]] = set()  # (repository, non-sha256 digest)
        self.protected: set[str] = set()
        self.kept_recent = 0
        self.repos: list[RepoState] = []
        self.temps: list[GcEntry] = []  # temp files of writes that never finished
        self.skipped: dict[str, Issue] = {}  # what gc leaves alone, and why

    # -- reading -------------------------------------------------------------------------
    def problem(self, path: str, message: str) -> None:
        self.problems.setdefault(path, Issue(path, message))

    def link(self, path: str, what: str) -> str | None:
        """The digest a link holds; None when the file is absent, malformed or not a file
        (a problem or a foreign object is recorded)."""
        return self.stamped_link(path, what, None)

    def stamped_link(
        self, path: str, what: str, times: dict[str, float] | None, key: str = ""
    ) -> str | None:
        """`link`; with `times`, the link's mtime is also put there under `key` (from the
        same fstat as the read: a tag's push time costs no second system call)."""
        try:
            if times is None:
                raw = self.files.read(path, MAX_LINK_BYTES)
            else:
                raw, mtime = self.files.read_stamped(path, MAX_LINK_BYTES)
                if mtime is not None:
                    times[key] = mtime
        except PathNotFound:
            return None
        except ForeignObjectError as exc:
            self.files.note(exc.foreign, exc.what)
            self.foreign_links.add(path)
            return None
        except StorageError as exc:
            self.problem(path, f"unreadable {what} link: {exc.message}")
            return None
        try:
            return parse_digest(raw.decode("ascii", "replace"))
        except DigestError as exc:
            self.problem(path, f"malformed {what} link: {exc}")
            return None

    def recent(self, path: str) -> bool:
        if self.cutoff is None:
            return False
        mtime = self.files.mtime(path)
        return mtime is not None and mtime >= self.cutoff

    def node(self, digest: str, context: str) -> Node | None:
        if digest in self.nodes:
            return self.nodes[digest]
        path = paths.blob_data(digest)
        node: Node | None = None
        try:
            raw = self.files.read(path, MAX_MANIFEST_BYTES)  # a link may name any blob
            node = quick_node(raw)
            if node is not None:
                self.nodes[digest] = node
                return node
            manifest = parse_manifest(raw)
        except PathNotFound:
            self.problem(path, f"manifest {digest} ({context}) is missing")
        except StorageError as exc:
            self.problem(path, f"manifest {digest} ({context}) is unreadable: {exc.message}")
        except ManifestError as exc:
            self.problem(path, f"manifest {digest} ({context}) cannot be parsed: {exc}")
        else:
            node = node_of(manifest)
        self.nodes[digest] = node
        return node

    # -- scanning ------------------------------------------------------------------------
    def scan(self, names: list[str]) -> None:
        """Scan, choose roots and mark one repository after the other; what a repository
        needed only for that (its manifests, roots, tags, links to marked blobs) is dropped
        when done (`settle`), so memory grows with the garbage, not with the tree."""
        for name in names:
            state = RepoState(name)
            self.scan_revisions(state)
            self.scan_tags(state)
            self.scan_layers(state)
            self.scan_uploads(state)
            self.choose_roots(state)
            self.settle(state, self.mark(state))
            # what its dropped manifests leave depends on this repository alone: swept now,
            # in the worker, rather than one repository at a time in the parent at the end
            state.swept = self.sweep_manifests(state)
            self.nodes.clear()
            self.repos.append(state)

    def settle(self, state: RepoState, marked: set[bytes | str]) -> None:
        """Keep of a marked repository what the sweep needs: its dropped revisions, the
        number of kept ones, its tag folders and uploads, and the layer links that may
        dangle (a sha256 link to a blob it `marked` never does: what is marked is not
        swept)."""
        state.kept_revisions += len(state.revisions) - len(state.dropped)
        state.revisions = {digest: state.revisions[digest] for digest in state.dropped}
        if not state.dropped:  # no tag index to look through: the tags are only counted
            state.other_tags += len(state.tag_folders)
            state.tag_folders = []
        state.tags = {}
        state.pushed = {}
        state.keep = set()
        sha256_links = bytearray()
        others = []
        for algorithm, name in state.layer_links:
            link_key = hex_key(algorithm, name)
            if isinstance(link_key, str):
                others.append((algorithm, name))
            elif link_key not in marked:
                sha256_links += link_key
        state.layer_links = others
        state.sha256_links = bytes(sha256_links)

    def scan_revisions(self, state: RepoState) -> None:
        base = paths.revisions_dir(state.name)
        for algorithm in self.files.dirs(base):
            for name in self.files.names(f"{base}/{algorithm}"):
                if not paths.is_digest_folder(algorithm, name):
                    continue  # not a revision: never a root, never deleted (verify says so)
                folder = f"{base}/{algorithm}/{name}"
                link = f"{folder}/{paths.LINK}"
                digest = self.link(link, "revision")
                if digest is not None and digest != f"{algorithm}:{name}":
                    self.problem(link, f"revision link holds {digest}, not its own digest")
                    digest = None
                if digest is not None:
                    state.revisions[digest] = link
                elif link in self.problems or link in self.foreign_links:
                    state.bad_revisions += 1
                else:
                    self.sweep_temps(folder)  # a link write that never finished

    def scan_tags(self, state: RepoState) -> None:
        for tag in self.files.names(paths.tags_dir(state.name)):
            state.tag_folders.append(tag)
            path = paths.tag_current_link(state.name, tag)
            times = state.pushed if self.push_times else None
            digest = self.stamped_link(path, "tag", times, tag)
            if digest is not None:
                state.tags[tag] = digest
            elif path not in self.problems and path not in self.foreign_links:
                self.warnings.append(Issue(path, "tag folder without a current link"))
                self.sweep_temps(path.rpartition("/")[0])

    def scan_layers(self, state: RepoState) -> None:
        base = paths.layers_dir(state.name)
        for algorithm in self.files.dirs(base):
            for name in self.files.names(f"{base}/{algorithm}"):  # checked before use
                state.layer_links.append((algorithm, name))
                if self.cutoff is not None:
                    link = f"{base}/{algorithm}/{name}/{paths.LINK}"
                    if self.recent(link):
                        target = self.quiet_link(link)
                        if target:
                            self.protected.add(target)

    def quiet_link(self, path: str) -> str | None:
        try:
            raw = self.files.read(path, MAX_LINK_BYTES)
            return parse_digest(raw.decode("ascii", "replace"))
        except (StorageError, DigestError):
            return None

    def scan_uploads(self, state: RepoState) -> None:
        for name in self.files.dirs(paths.uploads_dir(state.name)):
            if paths.is_upload_id(name):
                state.uploads.append(name)
            else:
                state.strays += 1  # not an upload: left alone, and so is its repository

    # -- deciding what is kept -------------------------------------------------------------
    def choose_roots(self, state: RepoState) -> None:
        if not self.options.delete_untagged:
            state.keep = set(state.revisions) | set(state.tags.values())
            return
        keep = set(state.tags.values())
        for digest, link in state.revisions.items():
            if digest not in keep and (self.recent(link) or self.recent(paths.blob_data(digest))):
                keep.add(digest)
                self.kept_recent += 1
        reach = retained(keep, state.revisions, lambda d: self.node(d, f"in {state.name}"))
        state.keep = reach
        state.dropped = sorted(d for d in state.revisions if d not in reach)

    def mark(self, state: RepoState) -> set[bytes | str]:
        """Mark what the repository's kept manifests reach; returns the keys of the blobs
        marked on the way (not those of manifests another repository marked first)."""
        stack = sorted(state.keep)
        marks, visited = self.marked, self.visited
        blobs: set[bytes | str] = set()
        while stack:
            digest = stack.pop()
            digest_key = key(digest)
            if digest_key in visited:
                continue
            visited.add(digest_key)
            marks.add_key(digest_key)
            node = self.node(digest, f"in {state.name}")
            if node is None:
                continue
            for blob in node.blobs:
                blob_key = key(blob)
                marks.add_key(blob_key)
                blobs.add(blob_key)
                if not blob.startswith(SHA256):
                    self.aliases.add((state.name, blob))
            stack.extend(node.children)
        return blobs

    def resolve_aliases(self) -> None:
        """A blob referenced by a sha512 digest is stored under its sha256 path."""
        for repository, digest in self.aliases:
            target = self.quiet_link(paths.layer_link(repository, digest))
            if target:
                self.marked.add(target)

    # -- the whole plan --------------------------------------------------------------------
    def mark_part(self, names: list[str], reader: V2Reader | None = None) -> MarkPart:
        """Scan, choose roots and mark for some repositories (runs in a worker, or over a
        window of a streamed scan: `reader`)."""
        part = self.spawn(reader)
        part.scan(names)
        return MarkPart(
            part.repos,
            part.marked.settle(),
            part.problems,
            part.warnings,
            part.aliases,
            part.protected,
            part.kept_recent,
            part.temps,
            part.skipped,
            part.files.foreign,
            part.outcomes(),
        )

    # -- hooks for a subclass that chooses roots differently (prune) -----------------------
    def spawn(self, reader: V2Reader | None = None) -> V2Collector:
        """A fresh collector of the same kind for one part of the work (over `reader`: a
        window of a streamed scan)."""
        return V2Collector(reader or self.reader, self.options, self.now, self.exact)

    def outcomes(self) -> tuple[object, ...]:
        """What a part decided besides the marks, carried back from a worker."""
        return ()

    def absorb(self, outcomes: tuple[object, ...]) -> None:
        """Take in a part's `outcomes` (see `outcomes`)."""

    def sweep_part(self, fans: list[tuple[str, str]], reader: V2Reader | None = None) -> SweepPart:
        """Sweep some blob fans (runs in a worker, or over a window: `reader`) against the
        marks made."""
        part = self.spawn(reader)
        part.marked, part.protected = self.marked, self.protected
        entries = part.sweep_blobs(fans)
        packed = bytearray()  # (key, size) of sha256 blobs: 40 bytes, not 3 objects, each
        others = []
        for entry in entries:
            entry_key = key(entry.id)
            if isinstance(entry_key, bytes) and entry.path == paths.blob_dir(entry.id):
                packed += entry_key + entry.size.to_bytes(8, "big")
            else:
                others.append(entry)
        del entries
        return SweepPart(
            others, part.kept_recent, part.temps, part.skipped, part.files.foreign, bytes(packed)
        )

    def take_marks(self, parts: Iterable[MarkPart]) -> None:
        """Take in the parts' marks and states, each part let go once taken."""
        for part in drain(parts):
            self.repos.extend(part.repos)
            self.marked.update(part.marked)
            for path, issue in part.problems.items():
                self.problems.setdefault(path, issue)
            self.warnings.extend(part.warnings)
            self.aliases |= part.aliases
            self.protected |= part.protected
            self.merge(part)
            self.absorb(part.outcomes)

    def take_sweeps(self, sweeps: Iterable[SweepPart], blobs: list[GcEntry]) -> None:
        """Add the sweeps' blob entries to `blobs`, each sweep let go once taken."""
        for sweep in drain(sweeps):
            blobs.extend(sweep.blob_entries())
            self.merge(sweep)

    def merge(self, part: MarkPart | SweepPart) -> None:
        self.kept_recent += part.kept_recent
        self.temps.extend(part.temps)
        for path, issue in part.skipped.items():
            self.skipped.setdefault(path, issue)
        for where, what in part.foreign.items():
            self.files.note(where, what)

    def plan(self) -> GcPlan:
        # upload-only folders too: what a first push or an import left when it died
        streamed = bulk.repository_windows(self.reader, uploads=True)
        marks: Iterable[MarkPart]
        if streamed is None:
            names = [repository.name for repository in self.reader.repositories(uploads=True)]
            for issue in self.reader.foreign_objects():
                self.files.note(issue.path, issue.message)
            workers = worker_count(self.files, len(names))
            marks = run_parts(self.mark_part, split(names, workers))
        else:
            # an object store: a window of repositories at a time, so memory stays flat;
            # what the rest of the plan reads (garbage only) comes from the store itself
            workers = 1
            self.driver = bulk.underneath(self.reader)
            self.files = self.driver.scanner()
            marks = (self.mark_part([r.name for r in repos], reader) for repos, reader in streamed)
        self.take_marks(marks)
        self.repos.sort(key=lambda state: state.name)
        self.resolve_aliases()
        self.marked.settle()  # before sweep workers fork: each would merge on its own
        blobs: list[GcEntry] = []
        fans = bulk.blob_windows(self.reader) if streamed is not None else None
        sweeps: Iterable[SweepPart]
        if fans is None:
            sweeps = run_parts(self.sweep_part, split(self.fans(), workers))
        else:
            sweeps = (
                self.sweep_part([p for p in pairs if p[0] in ALGORITHMS], reader)
                for pairs, reader in fans
            )
        self.take_sweeps(sweeps, blobs)
        blobs.sort(key=lambda entry: entry.path)
        doomed = {entry.id for entry in blobs}
        early: list[GcEntry] = []
        late: list[GcEntry] = []
        for state in drain(self.repos):  # each repository's state let go when swept
            early.extend(state.swept)
            early.extend(self.sweep_links(state, doomed))
            uploads = self.sweep_uploads(state)
            late.extend(uploads)
            repository = self.sweep_repository(state, len(uploads))
            if repository is not None:
                late.append(repository)
        late.extend(self.stale_multipart())
        refusals, foreign = judge_foreign(
            self.driver, self.files.foreign, paths.may_hold_tags, paths.REPOSITORIES
        )
        for issue in refusals:
            self.problems.setdefault(issue.path, issue)
        problems = tuple(sorted(self.problems.values(), key=lambda issue: issue.path))
        skipped = sorted([*foreign, *self.skipped.values()], key=lambda issue: issue.path)
        temps = sorted(self.temps, key=lambda entry: entry.path)
        return GcPlan(
            layout="v2",
            delete=tuple(early + temps + late + blobs),
            problems=problems,
            warnings=tuple(self.warnings),
            marked=len(self.marked),
            kept_recent=self.kept_recent,
            forced=self.options.force,
            skipped=tuple(skipped),
        )

    def stale_multipart(self) -> list[GcEntry]:
        """An object store's multipart uploads begun before the upload cutoff: unfinished
        writes (a push or commit that died) whose parts cost storage but are no object."""
        listing = getattr(self.driver, "multipart_uploads", None)
        if listing is None:
            return []
        return sorted(
            (
                GcEntry("multipart", m.upload_id, m.size, m.path)
                for m in listing(paths.V2)
                if m.initiated < self.upload_cutoff
            ),
            key=lambda entry: entry.path,
        )


def drain(items: Iterable[T]) -> Iterator[T]:
    """The items of a list in order, each let go by the list once taken (so what the
    caller is done with is freed as it goes); any other iterable as it is."""
    if not isinstance(items, list):
        yield from items
        return
    items.reverse()
    while items:
        yield items.pop()


@dataclass(frozen=True, slots=True)
class MarkPart:
    repos: list[RepoState]
    marked: Marks
    problems: dict[str, Issue]
    warnings: list[Issue]
    aliases: set[tuple[str, str]]
    protected: set[str]
    kept_recent: int
    temps: list[GcEntry]
    skipped: dict[str, Issue]
    foreign: dict[str, str]
    outcomes: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class SweepPart:
    entries: list[GcEntry]  # blobs not in `packed`
    kept_recent: int
    temps: list[GcEntry]
    skipped: dict[str, Issue]
    foreign: dict[str, str]
    packed: bytes = b""  # sha256 blobs: 32-byte digest, 8-byte size (big-endian), each

    def blob_entries(self) -> list[GcEntry]:
        """Every blob entry (the packed ones in the order they were found, then the rest)."""
        found = []
        packed = self.packed
        for at in range(0, len(packed), 40):
            digest = f"{SHA256}:{packed[at : at + 32].hex()}"
            size = int.from_bytes(packed[at + 32 : at + 40], "big")
            found.append(GcEntry("blob", digest, size, paths.blob_dir(digest)))
        found.extend(self.entries)
        return found


def plan_v2(reader: V2Reader, options: GcOptions, now: float, exact: bool = False) -> GcPlan:
    return V2Collector(reader, options, now, exact).plan()


def remove_repository(driver: StorageDriver, folder: str) -> None:
    """Remove a repository's own folders (never nested repositories), then empty parents."""
    for marker in (paths.LAYERS, paths.MANIFESTS, paths.UPLOADS):
        driver.delete(f"{folder}/{marker}")
    tidy = getattr(driver, "remove_empty_parents", None)
    if tidy is not None:
        tidy(folder, paths.REPOSITORIES)
