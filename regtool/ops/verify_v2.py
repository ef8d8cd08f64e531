"""`verify` on a distribution v2 tree: blobs re-hashed, links, manifests, tags and uploads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from regtool.layout.reader import Issue, Repository
from regtool.layout.v2 import bulk, paths
from regtool.layout.v2.reader import MAX_LINK_BYTES, LinkError, V2Reader
from regtool.model.digest import ALGORITHMS, DigestError, parse_digest, short
from regtool.model.manifest import ImageIndex
from regtool.model.references import may_be_absent
from regtool.ops.verify import (
    Checked,
    Findings,
    HashJob,
    Options,
    Severity,
    VerifyReport,
    hash_all,
    referrers,
)
from regtool.storage.driver import Entry, ForeignObjectError, StorageError

TEMP_FILE = paths.TEMP_FILE  # `<name>.<uuid>.tmp`: a write in progress, or killed
_HEX = re.compile(r"[a-f0-9]+")
LEGACY_SIGNATURES = "signatures"  # schema1 signature links of registry <= 2.3, ignored
TAG_CURRENT, TAG_INDEX = "current", "index"  # the two folders of a tag
STARTEDAT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339 in UTC, whole seconds (distribution)


@dataclass(frozen=True, slots=True)
class BlobFile:
    path: str
    size: int


@dataclass(slots=True)
class _Need:
    """Who needs a blob: labels, the worst severity, and whether an index needs it."""

    labels: list[str] = field(default_factory=list)
    severity: Severity = "warning"
    child: bool = False


class _V2Check:
    def __init__(self, reader: V2Reader, options: Options) -> None:
        self.reader = reader
        self.driver = reader.driver
        self.options = options
        self.found = Findings()
        self.blobs: dict[str, BlobFile] = {}
        self.broken: set[str] = set()
        self.needs: dict[str, _Need] = {}
        self.sizes: list[tuple[str, int, str]] = []  # (digest, stated size, who states it)
        self.counts = {"repositories": 0, "tags": 0, "links": 0, "uploads": 0}
        self.parsed: set[str] = set()

    # -- listing helpers -----------------------------------------------------------------
    def _list(self, prefix: str, obj: str | None = None) -> list[Entry]:
        """Children of `prefix`; links and special files are reported, never returned."""
        try:
            entries = self.driver.list(prefix)
        except ForeignObjectError as exc:
            self.found.foreign(exc.foreign, exc.what, obj)
            return []
        except StorageError as exc:
            self.found.add("unreadable-file", "error", prefix, prefix, exc.message)
            return []
        kept = []
        for entry in entries:
            if entry.foreign is None:
                kept.append(entry)
            else:
                self.found.foreign(f"{prefix}/{entry.name}", entry.foreign, obj)
        return kept

    def _stray(self, path: str, entry: Entry, what: str, obj: str | None = None) -> None:
        """A file or folder the layout does not have: temp file or junk.

        `obj` is the digest whose folder holds it, when there is one.
        """
        if not entry.is_dir and TEMP_FILE.fullmatch(entry.name):
            self.found.add(
                "temp-file", "warning", obj or entry.name, path, "temporary file of a write"
            )
        else:
            kind = "folder" if entry.is_dir else "file"
            detail = f"unexpected {kind} {what}"
            self.found.add("junk-file", "warning", obj or entry.name, path, detail)

    # -- blobs ---------------------------------------------------------------------------
    def scan_blobs(self) -> None:
        streamed = bulk.blob_windows(self.reader)
        top = self.driver
        if streamed is not None:  # an object store: the few folders above the fans itself
            self.driver = bulk.underneath(self.reader)
        fans = self._fans()
        if streamed is None:
            for algorithm, fan in fans:
                self._fan(algorithm, fan)
            return
        for pairs, reader in streamed:  # then the blobs, a window of fans at a time
            self.driver = reader.driver
            for algorithm, fan in pairs:
                if (algorithm, fan) in fans:
                    self._fan(algorithm, fan)
        self.driver = top

    def _fans(self) -> set[tuple[str, str]]:
        """(algorithm, fan) of every fan folder; anything else above the blobs reported."""
        found: set[tuple[str, str]] = set()
        for algorithm in self._list(paths.BLOBS):
            base = f"{paths.BLOBS}/{algorithm.name}"
            if not algorithm.is_dir or algorithm.name not in ALGORITHMS:
                self._stray(base, algorithm, "in the blob store")
                continue
            for fan in self._list(base):
                fan_path = f"{base}/{fan.name}"
                if not fan.is_dir or len(fan.name) != 2 or not _HEX.fullmatch(fan.name):
                    self._stray(fan_path, fan, "in the blob store")
                    continue
                found.add((algorithm.name, fan.name))
        return found

    def _fan(self, algorithm: str, fan: str) -> None:
        length = ALGORITHMS[algorithm]
        for folder in self._list(f"{paths.BLOBS}/{algorithm}/{fan}"):
            self._blob_folder(algorithm, length, fan, folder)

    def _blob_folder(self, algorithm: str, length: int, fan: str, folder: Entry) -> None:
        path = f"{paths.BLOBS}/{algorithm}/{fan}/{folder.name}"
        name = folder.name
        if not folder.is_dir or len(name) != length or not _HEX.fullmatch(name) or name[:2] != fan:
            self._stray(path, folder, "in the blob store (not a blob folder)")
            return
        digest = f"{algorithm}:{name}"
        for entry in self._list(path, digest):
            entry_path = f"{path}/{entry.name}"
            if entry.name != paths.DATA:
                self._stray(entry_path, entry, "in a blob folder", digest)
            elif entry.is_dir:
                self.broken.add(digest)
                self.blobs[digest] = BlobFile(entry_path, 0)
                self.found.add(
                    "unreadable-file", "error", digest, entry_path, "blob data is a folder"
                )
            else:
                try:
                    size = self.driver.stat(entry_path).size
                except StorageError as exc:
                    self.found.add("unreadable-file", "error", digest, entry_path, exc.message)
                    self.broken.add(digest)
                    size = 0
                self.blobs[digest] = BlobFile(entry_path, size)

    # -- links ---------------------------------------------------------------------------
    def _links(self, base: str) -> list[tuple[str, str]]:
        """(path digest, link path) of every `<base>/<alg>/<hex>/link`; strays reported."""
        found: list[tuple[str, str]] = []
        for algorithm in self._list(base):
            alg_path = f"{base}/{algorithm.name}"
            if not algorithm.is_dir or algorithm.name not in ALGORITHMS:
                self._stray(alg_path, algorithm, "among links")
                continue
            for folder in self._list(alg_path):
                folder_path = f"{alg_path}/{folder.name}"
                try:
                    digest = parse_digest(f"{algorithm.name}:{folder.name}")
                except DigestError:
                    digest = None
                if not folder.is_dir or digest is None:
                    self._stray(folder_path, folder, "among links (not a digest folder)")
                    continue
                for entry in self._list(folder_path):
                    entry_path = f"{folder_path}/{entry.name}"
                    if entry.name == paths.LINK:
                        found.append((digest, entry_path))
                    elif not (entry.is_dir and entry.name == LEGACY_SIGNATURES):
                        self._stray(entry_path, entry, "in a link folder", digest)
        return found

    def read_link(
        self, path: str, path_digest: str | None, alias_ok: bool = False, label: str = "-"
    ) -> str | None:
        """The digest a link names, or None after reporting why it cannot be used.

        `label` names the object in findings when the path holds no digest (tag links).
        """
        self.counts["links"] += 1
        try:
            digest = self.reader.read_link(path)
        except LinkError as exc:
            message = exc.issue.message
            kind = "unreadable-file" if message.startswith("unreadable") else "bad-link"
            self.found.add(kind, "error", path_digest or label, path, message)
            return None
        if path_digest is not None and digest != path_digest:
            alias = alias_ok and path_digest.startswith("sha512:") and digest.startswith("sha256:")
            if not alias:
                self.found.add(
                    "bad-link", "error", path_digest, path, f"holds {digest}, not its own digest"
                )
                return None
        return digest

    def need(self, digest: str, label: str, severity: Severity, child: bool = False) -> None:
        need = self.needs.setdefault(digest, _Need())
        need.labels.append(label)
        if severity == "error":
            need.severity = "error"
        need.child = need.child or child

    # -- repositories --------------------------------------------------------------------
    def check_repositories(self) -> None:
        streamed = bulk.repository_windows(self.reader)
        if streamed is None:
            repositories = self.reader.repositories()
            for issue in self.reader.foreign_objects():
                self.found.foreign(issue.path, issue.message)
            self._check(repositories)
            return
        top = self.reader, self.driver
        for repositories, reader in streamed:  # an object store: a window at a time
            self.reader, self.driver = reader, reader.driver
            self._check(repositories)
        self.reader, self.driver = top

    def _check(self, repositories: list[Repository]) -> None:
        for repo in repositories:
            self.counts["repositories"] += 1
            linked = self._layer_links(repo.name)
            for issue in repo.issues:
                self.found.add("no-layers-folder", "warning", repo.name, issue.path, issue.message)
            has_layers = not repo.issues
            revisions = self._revisions(repo.name, linked if has_layers else None)
            self._tags(repo.name, revisions)
            self._uploads(repo.name)

    def _layer_links(self, repo: str) -> set[str]:
        linked: set[str] = set()
        for path_digest, path in self._links(paths.layers_dir(repo)):
            target = self.read_link(path, path_digest, alias_ok=True)
            if target is None:
                continue
            linked.add(path_digest)
            linked.add(target)
            if target not in self.blobs:
                self.found.add(
                    "dangling-link", "warning", target, path, "layer link to a blob that is gone"
                )
        return linked

    def _revisions(self, repo: str, linked: set[str] | None) -> set[str]:
        revisions: set[str] = set()
        for path_digest, path in self._links(paths.revisions_dir(repo)):
            digest = self.read_link(path, path_digest)
            if digest is None:
                continue
            revisions.add(digest)
        for digest in sorted(revisions):
            label = f"{repo}@{short(digest)}"
            self.need(digest, f"revision {label}", "error")
            if digest in self.blobs and digest not in self.broken:
                self._manifest(repo, digest, label, revisions, linked)
        return revisions

    def _manifest(
        self, repo: str, digest: str, label: str, revisions: set[str], linked: set[str] | None
    ) -> None:
        manifest = self.reader.manifest(digest)
        if isinstance(manifest, Issue):
            self.found.add("unreadable-manifest", "error", digest, manifest.path, manifest.message)
            return
        self.parsed.add(digest)
        if isinstance(manifest, ImageIndex):
            for child in manifest.references():
                self.need(child.digest, f"index {label}", "error", child=True)
                self.sizes.append((child.digest, child.size, f"index {label}"))
                if child.digest in self.blobs and child.digest not in revisions:
                    self.found.add(
                        "missing-child",
                        "error",
                        child.digest,
                        paths.revision_link(repo, child.digest),
                        f"index {label} lists it but {repo} has no revision link for it "
                        "(the registry answers 404)",
                    )
            return
        # a missing blob is excused only where serve excuses it (model.references); schema1
        # layers declare no size (-1)
        needed = [
            (d.digest, d.size if d.size >= 0 else None)
            for d in manifest.references()
            if not may_be_absent(d)
        ]
        for blob, size in needed:
            self.need(blob, f"manifest {label}", "error")
            if size is not None:
                self.sizes.append((blob, size, f"manifest {label}"))
            if linked is not None and blob in self.blobs and blob not in linked:
                self.found.add(
                    "unlinked-blob",
                    "error",
                    blob,
                    paths.layer_link(repo, blob),
                    f"manifest {label} needs it but {repo} has no layer link to it "
                    "(the registry answers 404)",
                )

    def _tags(self, repo: str, revisions: set[str]) -> None:
        base = paths.tags_dir(repo)
        for entry in self._list(base):
            if not entry.is_dir:
                self._stray(f"{base}/{entry.name}", entry, "among tags")
                continue
            self.counts["tags"] += 1
            ref = f"{repo}:{entry.name}"
            current = paths.tag_current_link(repo, entry.name)
            self._tag_strays(repo, entry.name, current)
            digest = self.read_link(current, None, label=ref)
            if digest is not None:
                self.need(digest, f"tag {ref}", "error")
                if digest not in revisions:
                    self.found.add(
                        "dangling-link",
                        "error",
                        digest,
                        current,
                        f"tag {ref} points to a manifest {repo} has no revision link for",
                    )
            for path_digest, path in self._links(paths.tag_index_dir(repo, entry.name)):
                target = self.read_link(path, path_digest)
                if target is not None and target not in self.blobs:
                    self.found.add(
                        "dangling-link",
                        "warning",
                        target,
                        path,
                        f"history entry of tag {ref} names a manifest that is gone",
                    )

    def _uploads(self, repo: str) -> None:
        base = paths.uploads_dir(repo)
        for entry in self._list(base):
            if not entry.is_dir:
                continue
            self.counts["uploads"] += 1
            touched = self._upload_touched(repo, entry.name)
            age = self.options.now - touched
            if age > self.options.upload_age:
                self.found.add(
                    "stale-upload",
                    "warning",
                    entry.name,
                    paths.upload_dir(repo, entry.name),
                    f"upload to {repo} untouched for {age / 3600:.1f} h",
                )

    def _upload_touched(self, repo: str, upload: str) -> float:
        """The latest of `startedat` and the mtimes of the upload folder and its files
        (the rule gc uses to remove uploads)."""
        folder = paths.upload_dir(repo, upload)
        latest = 0.0
        try:
            latest = self.driver.stat(folder).mtime
            for info in self.driver.walk(folder):
                latest = max(latest, info.mtime)
        except StorageError:
            pass
        try:
            raw = self.driver.get(paths.upload_startedat(repo, upload), MAX_LINK_BYTES)
            text = raw.decode("ascii").strip()  # a timestamp
            started = datetime.strptime(text, STARTEDAT_FORMAT).replace(tzinfo=UTC)
            latest = max(latest, started.timestamp())
        except (StorageError, ValueError, UnicodeDecodeError):
            pass
        return latest

    def _tag_strays(self, repo: str, tag: str, current: str) -> None:
        """Anything in a tag folder besides `current/link` and `index/`."""
        tag_path = paths.tag_dir(repo, tag)
        current_dir = current.rpartition("/")[0]
        for entry in self._list(tag_path):
            if entry.name not in (TAG_CURRENT, TAG_INDEX) or not entry.is_dir:
                self._stray(f"{tag_path}/{entry.name}", entry, "in a tag folder")
        for entry in self._list(current_dir):
            if entry.name != paths.LINK:
                self._stray(f"{current_dir}/{entry.name}", entry, "in a tag folder")

    # -- results -------------------------------------------------------------------------
    def report_needs(self) -> None:
        for digest, need in sorted(self.needs.items()):
            if digest in self.blobs:
                continue
            kind = "missing-child" if need.child else "missing-blob"
            what = "manifest" if need.child else "blob"
            self.found.add(
                kind,
                need.severity,
                digest,
                paths.blob_data(digest),
                f"{what} missing; needed by {referrers(need.labels)}",
            )

    def hash_blobs(self) -> tuple[int, set[str]]:
        jobs = [
            HashJob(digest, blob.path, blob.size, digest.partition(":")[0])
            for digest, blob in self.blobs.items()
            if digest not in self.broken
        ]
        results = hash_all(self.driver, jobs, self.options.jobs, self.options.progress)
        corrupt: set[str] = set()
        for result in results:
            digest = result.job.key
            if result.error is not None:
                self.found.add("unreadable-file", "error", digest, result.job.path, result.error)
                corrupt.add(digest)
            elif result.value != digest:
                corrupt.add(digest)
                self.found.add(
                    "digest-mismatch",
                    "error",
                    digest,
                    result.job.path,
                    f"content ({result.job.size} bytes) hashes to {result.value}",
                )
        return sum(job.size for job in jobs), corrupt

    def report_sizes(self, corrupt: set[str]) -> None:
        for digest, stated, who in self.sizes:
            blob = self.blobs.get(digest)
            if blob is None or digest in self.broken or digest in corrupt:
                continue
            if blob.size != stated:
                self.found.add(
                    "size-mismatch",
                    "error",
                    digest,
                    blob.path,
                    f"{who} states {stated} bytes, the blob has {blob.size}",
                )


def verify_v2(reader: V2Reader, options: Options) -> VerifyReport:
    check = _V2Check(reader, options)
    check.scan_blobs()
    check.check_repositories()
    check.report_needs()
    hashed, corrupt = (0, set()) if options.quick else check.hash_blobs()
    check.report_sizes(corrupt)
    checked = Checked(
        layout="v2",
        repositories=check.counts["repositories"],
        tags=check.counts["tags"],
        links=check.counts["links"],
        manifests=len(check.parsed),
        blobs=len(check.blobs),
        bytes=hashed,
        uploads=check.counts["uploads"],
    )
    return VerifyReport(checked, check.found.sorted())
