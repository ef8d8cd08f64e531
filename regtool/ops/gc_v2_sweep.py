"""The sweep half of gc on a v2 tree: what is garbage among what was not marked.

Only objects gc recognises are planned, each checked whole: a blob folder holding `data`
(and temp files of writes to it), a link folder holding its link, an upload holding what
uploads hold, a repository whose folders hold nothing else. Anything else in or in place
of them (a file the layout does not have, a link, a FIFO) keeps the object and is listed
in the plan's `skipped`. Temp files of writes that never finished are planned one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from regtool.layout.reader import Issue
from regtool.layout.v2 import paths
from regtool.layout.v2.reader import MAX_LINK_BYTES
from regtool.model.digest import ALGORITHMS
from regtool.ops.gc import GcEntry
from regtool.ops.gc_io import HEX, hex_key, key
from regtool.ops.gc_marks import Marks
from regtool.storage.driver import StorageDriver, StorageError
from regtool.storage.scan import Child, Folder, Scan

SHA256 = "sha256"


@dataclass(slots=True)
class RepoState:
    name: str
    revisions: dict[str, str] = field(default_factory=dict)  # digest -> revision link path
    bad_revisions: int = 0
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest of current/link
    tag_folders: list[str] = field(default_factory=list)
    pushed: dict[str, float] = field(default_factory=dict)  # tag -> link mtime (prune)
    layer_links: list[tuple[str, str]] = field(default_factory=list)  # (algorithm, hex)
    uploads: list[str] = field(default_factory=list)
    strays: int = 0  # folders that are not part of the layout: the repository stays
    keep: set[str] = field(default_factory=set)  # manifests kept (roots of the mark)
    dropped: list[str] = field(default_factory=list)
    swept: list[GcEntry] = field(default_factory=list)  # its manifests' entries (sweep_manifests)
    # once marked (`settle`), `revisions` holds the dropped ones only, the others counted
    # here; and with none dropped, the tag folders are only counted
    kept_revisions: int = 0
    other_tags: int = 0
    # once marked, the sha256 layer links that may dangle, as 32-byte keys (sorted); the
    # others stay in `layer_links`
    sha256_links: bytes = b""


def fan_number(algorithm: str, fan: str) -> int | None:
    """The first byte of the sha256 digests a fan folder holds (None for any other)."""
    if algorithm == SHA256 and len(fan) == 2 and not fan.strip(HEX):
        return int(fan, 16)
    return None


@dataclass(frozen=True, slots=True)
class Whole:
    """A folder gc may delete whole: its bytes (links count 0) and newest mtime."""

    size: int
    newest: float


class Sweeper:
    """Mixed into the collector: it provides the marks, the clock and the reads."""

    driver: StorageDriver
    files: Scan
    exact: bool  # list every folder about to be deleted (the real run)
    cutoff: float | None
    upload_cutoff: float
    kept_recent: int
    marked: Marks  # every digest in use
    protected: set[str]
    temps: list[GcEntry]
    skipped: dict[str, Issue]

    def quiet_link(self, path: str) -> str | None:
        raise NotImplementedError

    def old(self, mtime: float) -> bool:
        """Written before the grace window (everything is, with no grace)."""
        if self.cutoff is None or mtime < self.cutoff:
            return True
        self.kept_recent += 1
        return False

    def leave(self, path: str, reason: str) -> None:
        """Something gc found in place of, or inside, an object and leaves alone."""
        self.skipped.setdefault(path, Issue(path, reason))

    def sweep_temps(self, folder: str) -> None:
        """Temp files of writes that never finished, in a folder whose file is missing."""
        for child in self.files.children(folder) or ():
            if child.foreign is None and not child.is_dir and paths.TEMP_FILE.fullmatch(child.name):
                if self.old(child.mtime):
                    path = f"{folder}/{child.name}"
                    self.temps.append(GcEntry("temp", child.name, child.size, path))

    def whole(self, folder: str, allowed: Callable[[str], bool], what: str) -> Whole | None:
        """Size and newest mtime of a folder to delete, if everything in it is `allowed`
        (paths relative to it); None, with the reason in `skipped`, otherwise."""
        children = self.files.children(folder)
        if children is None:
            return None  # a link (noted)
        if any(child.is_dir for child in children):
            files = self.files.tree(folder)
            if files is None:
                return None
            cut = len(folder) + 1
            found = [(f.path[cut:], f.size, f.mtime, f.foreign) for f in files]
        else:
            found = [(c.name, c.size, c.mtime, c.foreign) for c in children]
        size, newest = 0, 0.0
        for relative, file_size, mtime, foreign in found:
            if foreign is not None:
                self.files.note(f"{folder}/{relative}", foreign)  # listed as skipped
                return None
            if not allowed(relative):
                self.leave(folder, f"{what} holds {relative}, not part of the layout: left alone")
                return None
            if relative.rpartition("/")[2] != paths.LINK:
                size += file_size  # links count as 0 bytes, like everywhere in a plan
            newest = max(newest, mtime)
        return Whole(size, newest)

    def fans(self) -> list[tuple[str, str]]:
        """(algorithm, two-hex folder) pairs of the blob store."""
        found: list[tuple[str, str]] = []
        for algorithm in self.files.dirs(paths.BLOBS):
            if algorithm in ALGORITHMS:
                fans = self.files.dirs(f"{paths.BLOBS}/{algorithm}")
                found.extend((algorithm, fan) for fan in fans)
        return found

    def sweep_blobs(self, fans: list[tuple[str, str]]) -> list[GcEntry]:
        entries: list[GcEntry] = []
        marked, protected = self.marked, self.protected
        for algorithm, fan in fans:
            here = fan_number(algorithm, fan)
            in_fan = marked.fan(here) if here is not None else set()
            with self.files.folder(f"{paths.BLOBS}/{algorithm}/{fan}") as folder:
                for hexpart in folder.names:
                    blob_key = hex_key(algorithm, hexpart)
                    if isinstance(blob_key, bytes) and blob_key[0] == here:
                        if blob_key in in_fan:
                            continue
                    elif blob_key in marked:
                        continue
                    if not paths.is_digest_folder(algorithm, hexpart):
                        continue  # not a blob folder: never ours to delete
                    digest = f"{algorithm}:{hexpart}"
                    if not hexpart.startswith(fan) or digest in protected:
                        continue
                    found = self.blob_entry(digest, folder)
                    if found is not None:
                        entries.append(found)
        return entries

    def blob_entry(self, digest: str, fan: Folder) -> GcEntry | None:
        """The blob folder of an unmarked digest, when it holds `data` (and temp files of
        writes to it) only and nothing in it is recent; else None (temp files alone are
        planned one by one).

        Only `exact` (the real run) lists the folder; a dry run looks at `data` alone,
        from its fan folder and without following links.
        """
        folder = paths.blob_dir(digest)
        temps: list[Child] = []
        if self.exact:
            data = self.blob_files(folder, temps)
            if data is False:
                return None
        else:
            data = fan.entry(f"{digest.partition(':')[2]}/{paths.DATA}")
        if data is None:
            self.sweep_temps(folder)  # a blob write that never finished
            return None
        if data.foreign is not None:
            return None  # noted
        if data.is_dir:
            self.leave(folder, "blob folder holds data, a folder: left alone")
            return None
        if self.cutoff is not None and max(c.mtime for c in (data, *temps)) >= self.cutoff:
            self.kept_recent += 1
            return None
        return GcEntry("blob", digest, data.size + sum(t.size for t in temps), folder)

    def blob_files(self, folder: str, temps: list[Child]) -> Child | None | Literal[False]:
        """`data` of a blob folder (None when missing), its temp files added to `temps`;
        False when the folder is gone, a link, or holds anything else (said so)."""
        children = self.files.children(folder)
        if not children:
            return False  # gone meanwhile, empty, or a link (noted)
        data: Child | None = None
        for child in children:
            if child.foreign is not None:
                self.files.note(f"{folder}/{child.name}", child.foreign)
                return False
            if child.name == paths.DATA:
                data = child
            elif not child.is_dir and paths.TEMP_FILE.fullmatch(child.name):
                temps.append(child)
            else:
                detail = f"blob folder holds {child.name}, not part of the layout: left alone"
                self.leave(folder, detail)
                return False
        return data

    def sweep_links(self, state: RepoState, doomed: set[str]) -> list[GcEntry]:
        """`_layers` links to blobs being deleted or already gone (read when not sha256)."""
        entries = []
        base = paths.layers_dir(state.name)
        marked, protected = self.marked, self.protected
        links = state.sha256_links
        sha256 = ((SHA256, links[at : at + 32].hex()) for at in range(0, len(links), 32))
        for algorithm, name in itertools.chain(sha256, state.layer_links):  # in name order
            digest = f"{algorithm}:{name}"
            in_use = hex_key(algorithm, name) in marked
            if in_use and algorithm == SHA256 and digest not in doomed:
                continue  # the usual case, decided without looking further
            if not paths.is_digest_folder(algorithm, name):
                continue  # not a link folder: never ours to delete
            if algorithm == SHA256:
                if digest not in doomed and (in_use or not self.gone(digest)):
                    continue
            else:
                target = self.quiet_link(f"{base}/{algorithm}/{name}/{paths.LINK}")
                if target is None or (target not in doomed and not self.gone(target)):
                    continue
            if digest in protected:
                continue
            folder = f"{base}/{algorithm}/{name}"
            if self.exact:
                whole = self.whole(folder, paths.is_link_folder_file, "layer link folder")
                newest = whole.newest if whole is not None else None
            elif self.cutoff is not None:  # a dry run looks at the link alone, if at all
                newest = self.files.mtime(f"{folder}/{paths.LINK}") or 0.0
            else:
                newest = 0.0
            if newest is None or (self.cutoff is not None and newest >= self.cutoff):
                continue
            entries.append(GcEntry("link", f"{state.name}@{digest}", 0, folder))
        return entries

    def gone(self, digest: str) -> bool:
        """A blob that is neither in use nor stored (its link dangles); a link or anything
        else in its place is not "gone"."""
        if key(digest) in self.marked or digest in self.protected:
            return False
        try:
            return self.files.absent(paths.blob_data(digest))
        except ValueError:
            return False

    def sweep_manifests(self, state: RepoState) -> list[GcEntry]:
        entries: list[GcEntry] = []
        if not state.dropped:
            return entries
        dropped = set(state.dropped)
        algorithms = sorted({digest.partition(":")[0] for digest in dropped})
        for tag in state.tag_folders:
            index = paths.tag_index_dir(state.name, tag)
            for algorithm in algorithms:  # only where a dropped digest can be listed
                for name in self.files.dirs(f"{index}/{algorithm}"):
                    digest = f"{algorithm}:{name}"
                    if digest not in dropped:
                        continue
                    folder = f"{index}/{algorithm}/{name}"
                    if self.whole(folder, paths.is_link_folder_file, "tag index entry"):
                        entries.append(GcEntry("link", f"{state.name}:{tag}@{digest}", 0, folder))
        for digest in state.dropped:
            folder = state.revisions[digest].rpartition("/")[0]
            if self.whole(folder, paths.is_revision_folder_file, "revision folder"):
                entries.append(GcEntry("manifest", f"{state.name}@{digest}", 0, folder))
            else:
                state.bad_revisions += 1  # it stays, and so does its repository
        return entries

    def sweep_uploads(self, state: RepoState) -> list[GcEntry]:
        entries = []
        for upload in state.uploads:
            folder = paths.upload_dir(state.name, upload)
            whole = self.whole(folder, paths.is_upload_file, "upload")
            if whole is None:
                continue
            newest = max(self.mtime(folder), whole.newest)
            started = self.started_at(paths.upload_startedat(state.name, upload))
            if newest >= self.upload_cutoff or (started or 0) >= self.upload_cutoff:
                continue
            entries.append(GcEntry("upload", upload, whole.size, folder))
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
        if state.tag_folders or state.other_tags or state.bad_revisions or state.strays:
            return None
        kept = state.kept_revisions + len(state.revisions) - len(state.dropped)
        if kept or len(state.uploads) > uploads_gone:
            return None
        folder = paths.repository(state.name)
        size = 0
        for marker in (paths.LAYERS, paths.MANIFESTS, paths.UPLOADS):
            whole = self.whole(f"{folder}/{marker}", self.in_repository(marker), "repository")
            if whole is None:
                return None
            if marker != paths.UPLOADS:
                if self.cutoff is not None and whole.newest >= self.cutoff:
                    self.kept_recent += 1
                    return None
                size += whole.size  # links count 0 bytes, temp files their size
        return GcEntry("repository", state.name, size, folder)

    @staticmethod
    def in_repository(marker: str) -> Callable[[str], bool]:
        return lambda relative: paths.is_repository_file(f"{marker}/{relative}")
