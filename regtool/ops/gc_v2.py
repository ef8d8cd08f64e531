"""gc on a distribution v2 tree: mark from every revision and tag, recursively; sweep the rest.

Roots are the revision links and tag `current/link`s of every repository (a folder holding
`_layers` or `_manifests`), read by their content. Marking follows index children to any
depth (distribution 2.8.2 stops after one level: its bug #3178), and with
`delete_untagged` a manifest no tag reaches is dropped unless a kept index lists it or its
`subject` is kept. Blobs are walked by listing folders only; a blob's files are looked at
just when it is not marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from regtool.layout.reader import Issue
from regtool.layout.v2 import paths
from regtool.layout.v2.reader import MAX_LINK_BYTES, V2Reader
from regtool.model.digest import ALGORITHMS, DigestError, parse_digest
from regtool.model.manifest import (
    MAX_MANIFEST_BYTES,
    ImageIndex,
    ManifestError,
    Schema1Manifest,
    parse_manifest,
)
from regtool.ops.gc import GcEntry, GcOptions, GcPlan
from regtool.ops.gc_io import Files, Node, quick_node, run_parts, split, worker_count
from regtool.storage.driver import PathNotFound, StorageDriver, StorageError

_HEX = re.compile(r"[a-f0-9]+")
SHA256 = "sha256"


@dataclass(slots=True)
class RepoState:
    name: str
    revisions: dict[str, str] = field(default_factory=dict)  # digest -> revision link path
    bad_revisions: int = 0
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest of current/link
    tag_folders: list[str] = field(default_factory=list)
    layer_links: list[tuple[str, str]] = field(default_factory=list)  # (algorithm, hex)
    uploads: list[str] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)  # manifests kept (roots of the mark)
    dropped: list[str] = field(default_factory=list)


class V2Collector:
    def __init__(
        self, reader: V2Reader, options: GcOptions, now: float, exact: bool = False
    ) -> None:
        self.exact = exact
        self.driver: StorageDriver = reader.driver
        self.files = Files(reader.driver)
        self.reader = reader
        self.options = options
        self.now = now
        self.cutoff = now - options.grace if options.grace > 0 else None
        self.upload_cutoff = now - options.upload_age
        self.problems: dict[str, Issue] = {}
        self.warnings: list[Issue] = []
        self.nodes: dict[str, Node | None] = {}
        self.marked: set[str] = set()
        self.visited: set[str] = set()  # manifests whose references are marked
        self.aliases: set[tuple[str, str]] = set()  # (repository, non-sha256 digest)
        self.protected: set[str] = set()
        self.kept_recent = 0
        self.repos: list[RepoState] = []

    # -- reading -------------------------------------------------------------------------
    def problem(self, path: str, message: str) -> None:
        self.problems.setdefault(path, Issue(path, message))

    def link(self, path: str, what: str) -> str | None:
        """The digest a link holds; None when the file is absent or malformed (recorded)."""
        try:
            raw = self.files.read(path, MAX_LINK_BYTES)
        except PathNotFound:
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
        try:
            return self.driver.stat(path).mtime >= self.cutoff
        except StorageError:
            return False

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
            subject = manifest.subject.digest if manifest.subject is not None else None
            if isinstance(manifest, ImageIndex):
                children = tuple(d.digest for d in manifest.manifests)
                node = Node((), children, subject)
            elif isinstance(manifest, Schema1Manifest):
                node = Node(manifest.fs_layers, (), None)
            else:
                blobs = (manifest.config.digest, *(d.digest for d in manifest.layers))
                node = Node(blobs, (), subject)
        self.nodes[digest] = node
        return node

    # -- scanning ------------------------------------------------------------------------
    def scan(self, names: list[str]) -> None:
        for name in names:
            state = RepoState(name)
            self.scan_revisions(state)
            self.scan_tags(state)
            self.scan_layers(state)
            self.scan_uploads(state)
            self.repos.append(state)

    def scan_revisions(self, state: RepoState) -> None:
        base = paths.revisions_dir(state.name)
        for algorithm in self.files.names(base):
            for name in self.files.names(f"{base}/{algorithm}"):
                link = f"{base}/{algorithm}/{name}/{paths.LINK}"
                digest = self.link(link, "revision")
                if digest is not None:
                    state.revisions[digest] = link
                elif link in self.problems:
                    state.bad_revisions += 1

    def scan_tags(self, state: RepoState) -> None:
        for tag in self.files.names(paths.tags_dir(state.name)):
            state.tag_folders.append(tag)
            path = paths.tag_current_link(state.name, tag)
            digest = self.link(path, "tag")
            if digest is not None:
                state.tags[tag] = digest
            elif path not in self.problems:
                self.warnings.append(Issue(path, "tag folder without a current link"))

    def scan_layers(self, state: RepoState) -> None:
        base = paths.layers_dir(state.name)
        for algorithm in self.files.names(base):
            for name in self.files.names(f"{base}/{algorithm}"):
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
        state.uploads.extend(self.files.dirs(paths.uploads_dir(state.name)))

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
        while True:
            reach = self.reachable(state.name, keep)
            grown = False
            for digest in state.revisions:
                if digest in reach:
                    continue
                node = self.node(digest, f"untagged in {state.name}")
                if node is None or (node.subject is not None and node.subject in reach):
                    keep.add(digest)  # an artifact of a kept manifest, or unreadable: kept
                    grown = True
            if not grown:
                break
        state.keep = reach
        state.dropped = sorted(d for d in state.revisions if d not in reach)

    def reachable(self, repository: str, roots: set[str]) -> set[str]:
        """Manifests reachable from `roots` through index children (any depth)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            digest = stack.pop()
            if digest in seen:
                continue
            seen.add(digest)
            node = self.node(digest, f"in {repository}")
            if node is not None:
                stack.extend(node.children)
        return seen

    def mark(self, state: RepoState) -> None:
        stack = sorted(state.keep)
        marked, visited = self.marked, self.visited
        while stack:
            digest = stack.pop()
            if digest in visited:
                continue
            visited.add(digest)
            marked.add(digest)
            node = self.node(digest, f"in {state.name}")
            if node is None:
                continue
            for blob in node.blobs:
                marked.add(blob)
                if not blob.startswith(SHA256):
                    self.aliases.add((state.name, blob))
            stack.extend(node.children)

    def resolve_aliases(self) -> None:
        """A blob referenced by a sha512 digest is stored under its sha256 path."""
        for repository, digest in self.aliases:
            target = self.quiet_link(paths.layer_link(repository, digest))
            if target:
                self.marked.add(target)

    # -- sweeping --------------------------------------------------------------------------
    def fans(self) -> list[tuple[str, str]]:
        """(algorithm, two-hex folder) pairs of the blob store."""
        found = []
        for algorithm in self.files.dirs(paths.BLOBS):
            if algorithm in ALGORITHMS:
                fans = self.files.dirs(f"{paths.BLOBS}/{algorithm}")
                found.extend((algorithm, fan) for fan in fans)
        return found

    def sweep_blobs(self, fans: list[tuple[str, str]]) -> list[GcEntry]:
        entries: list[GcEntry] = []
        marked, protected = self.marked, self.protected
        for algorithm, fan in fans:
            length = ALGORITHMS[algorithm]
            base = f"{paths.BLOBS}/{algorithm}"
            for hexpart in self.files.names(f"{base}/{fan}"):
                digest = f"{algorithm}:{hexpart}"
                if digest in marked:
                    continue
                if len(hexpart) != length or not _HEX.fullmatch(hexpart):
                    continue  # not a blob folder: never ours to delete
                if not hexpart.startswith(fan) or digest in protected:
                    continue
                found = self.blob_entry(digest)
                if found is not None:
                    entries.append(found)
        return entries

    def blob_entry(self, digest: str) -> GcEntry | None:
        folder = paths.blob_dir(digest)
        data = paths.blob_data(digest)
        size = 0
        data_mtime: float | None = None
        found = self.files.files(folder) if self.exact else self.files.one(data)
        for path, file_size, mtime in found:
            size += file_size
            if path == data:
                data_mtime = mtime
        if data_mtime is None:
            return None  # temp files only: not a blob
        if self.cutoff is not None and data_mtime >= self.cutoff:
            self.kept_recent += 1
            return None
        return GcEntry("blob", digest, size, folder)

    def sweep_links(self, state: RepoState, doomed: set[str]) -> list[GcEntry]:
        """`_layers` links to blobs being deleted or already gone (read when not sha256)."""
        entries = []
        base = paths.layers_dir(state.name)
        marked, protected = self.marked, self.protected
        for algorithm, name in state.layer_links:
            digest = f"{algorithm}:{name}"
            if algorithm == SHA256:
                if digest not in doomed and (digest in marked or not self.gone(digest)):
                    continue
            else:
                target = self.quiet_link(f"{base}/{algorithm}/{name}/{paths.LINK}")
                if target is None or (target not in doomed and not self.gone(target)):
                    continue
            if digest in protected:
                continue
            folder = f"{base}/{algorithm}/{name}"
            link = f"{folder}/{paths.LINK}"
            if self.recent(link):
                continue
            entries.append(GcEntry("link", f"{state.name}@{digest}", 0, folder))
        return entries

    def gone(self, digest: str) -> bool:
        """A blob that is neither in use nor stored (its link dangles)."""
        if digest in self.marked or digest in self.protected:
            return False
        try:
            return not self.driver.exists(paths.blob_data(digest))
        except (StorageError, ValueError):
            return False

    def sweep_manifests(self, state: RepoState) -> list[GcEntry]:
        entries = []
        if not state.dropped:
            return entries
        dropped = set(state.dropped)
        for tag in state.tag_folders:
            index = paths.tag_index_dir(state.name, tag)
            for algorithm in self.files.dirs(index):
                for name in self.files.dirs(f"{index}/{algorithm}"):
                    digest = f"{algorithm}:{name}"
                    if digest in dropped:
                        folder = f"{index}/{algorithm}/{name}"
                        entries.append(GcEntry("link", f"{state.name}:{tag}@{digest}", 0, folder))
        for digest in state.dropped:
            folder = state.revisions[digest].rpartition("/")[0]
            entries.append(GcEntry("manifest", f"{state.name}@{digest}", 0, folder))
        return entries

    def sweep_uploads(self, state: RepoState) -> list[GcEntry]:
        entries = []
        for upload in state.uploads:
            folder = paths.upload_dir(state.name, upload)
            size = 0
            newest = self.mtime(folder)
            for info in self.driver.walk(folder):
                size += info.size
                newest = max(newest, info.mtime)
            started = self.started_at(paths.upload_startedat(state.name, upload))
            if newest >= self.upload_cutoff or (started or 0) >= self.upload_cutoff:
                continue
            entries.append(GcEntry("upload", upload, size, folder))
        return entries

    def mtime(self, path: str) -> float:
        try:
            return self.driver.stat(path).mtime
        except StorageError:
            return 0.0

    def started_at(self, path: str) -> float | None:
        try:
            text = self.driver.get(path, MAX_LINK_BYTES).decode("ascii").strip()  # a timestamp
            stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except (StorageError, UnicodeDecodeError, ValueError):
            return None
        return stamp.timestamp()

    def sweep_repository(self, state: RepoState, uploads_gone: int) -> GcEntry | None:
        if state.tag_folders or state.bad_revisions:
            return None
        if len(state.revisions) > len(state.dropped) or len(state.uploads) > uploads_gone:
            return None
        folder = paths.repository(state.name)
        size = 0
        for marker in (paths.LAYERS, paths.MANIFESTS):
            for info in self.driver.walk(f"{folder}/{marker}"):
                if self.cutoff is not None and info.mtime >= self.cutoff:
                    self.kept_recent += 1
                    return None
                if not info.path.endswith(f"/{paths.LINK}"):
                    size += info.size
        return GcEntry("repository", state.name, size, folder)

    # -- the whole plan --------------------------------------------------------------------
    def mark_part(self, names: list[str]) -> MarkPart:
        """Scan, choose roots and mark for some repositories (runs in a worker)."""
        part = V2Collector(self.reader, self.options, self.now, self.exact)
        part.scan(names)
        for state in part.repos:
            part.choose_roots(state)
        for state in part.repos:
            part.mark(state)
        return MarkPart(
            part.repos,
            part.marked,
            part.problems,
            part.warnings,
            part.aliases,
            part.protected,
            part.kept_recent,
        )

    def sweep_part(self, fans: list[tuple[str, str]]) -> SweepPart:
        before = self.kept_recent
        entries = self.sweep_blobs(fans)
        recent, self.kept_recent = self.kept_recent - before, before
        return SweepPart(entries, recent)

    def plan(self) -> GcPlan:
        names = [repository.name for repository in self.reader.repositories()]
        workers = worker_count(self.files, len(names))
        for part in run_parts(self.mark_part, split(names, workers)):
            self.repos.extend(part.repos)
            self.marked |= part.marked
            for path, issue in part.problems.items():
                self.problems.setdefault(path, issue)
            self.warnings.extend(part.warnings)
            self.aliases |= part.aliases
            self.protected |= part.protected
            self.kept_recent += part.kept_recent
        self.repos.sort(key=lambda state: state.name)
        self.resolve_aliases()
        blobs: list[GcEntry] = []
        for sweep in run_parts(self.sweep_part, split(self.fans(), workers)):
            blobs.extend(sweep.entries)
            self.kept_recent += sweep.kept_recent
        blobs.sort(key=lambda entry: entry.path)
        doomed = {entry.id for entry in blobs}
        early: list[GcEntry] = []
        late: list[GcEntry] = []
        for state in self.repos:
            early.extend(self.sweep_manifests(state))
            early.extend(self.sweep_links(state, doomed))
            uploads = self.sweep_uploads(state)
            late.extend(uploads)
            repository = self.sweep_repository(state, len(uploads))
            if repository is not None:
                late.append(repository)
        problems = tuple(sorted(self.problems.values(), key=lambda issue: issue.path))
        return GcPlan(
            layout="v2",
            delete=tuple(early + late + blobs),
            problems=problems,
            warnings=tuple(self.warnings),
            marked=len(self.marked),
            kept_recent=self.kept_recent,
            forced=self.options.force,
        )


@dataclass(frozen=True, slots=True)
class MarkPart:
    repos: list[RepoState]
    marked: set[str]
    problems: dict[str, Issue]
    warnings: list[Issue]
    aliases: set[tuple[str, str]]
    protected: set[str]
    kept_recent: int


@dataclass(frozen=True, slots=True)
class SweepPart:
    entries: list[GcEntry]
    kept_recent: int


def plan_v2(reader: V2Reader, options: GcOptions, now: float, exact: bool = False) -> GcPlan:
    return V2Collector(reader, options, now, exact).plan()


def remove_repository(driver: StorageDriver, folder: str) -> None:
    """Remove a repository's own folders (never nested repositories), then empty parents."""
    for marker in (paths.LAYERS, paths.MANIFESTS, paths.UPLOADS):
        driver.delete(f"{folder}/{marker}")
    tidy = getattr(driver, "remove_empty_parents", None)
    if tidy is not None:
        tidy(folder, paths.REPOSITORIES)
