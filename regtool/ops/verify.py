"""`verify`: re-hash stored content and check the structure around it, on both layouts.

The report type, the finding kinds and the parallel hasher live here; the layout specific
checks are in `verify_v2.py` and `verify_v1.py`. Nothing here prints or exits.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from regtool.storage.driver import StorageDriver, StorageError

if TYPE_CHECKING:  # `verify --help` need not load the layouts
    from regtool.layout.reader import RegistryReader

CHUNK = 1 << 20
DEFAULT_UPLOAD_AGE = 24 * 3600.0

Severity = Literal["error", "warning"]

# kind -> how to repair; the CLI prints these under the table, JSON carries them per finding
HINTS: dict[str, str] = {
    "digest-mismatch": "the stored bytes are corrupt: push the image again (the registry "
    "keeps a blob that exists, so remove the bad data folder first), or restore it from backup",
    "size-mismatch": "a manifest states another size than the stored blob: push the image again",
    "missing-blob": "push the image again, or remove the tag/manifest that needs it "
    "(regtool rm) and run regtool gc",
    "missing-child": "push the multi-platform image again (every platform), or remove its tag",
    "unlinked-blob": "the registry answers 404 for a blob its repository has no _layers link "
    "to: push the image again",
    "dangling-link": "a link names something that is gone: push the image again, or remove the "
    "tag (regtool rm); regtool gc removes stale _layers and tag index links",
    "bad-link": "rewrite the link file to hold exactly the digest (lower-case hex, no newline); "
    "distribution 2.8.2 fails (HTTP 500, garbage-collect aborts) on malformed links",
    "unreadable-manifest": "the manifest blob is not a manifest: push the image again, or remove "
    "the tag and revision link that name it",
    "unreadable-file": "a file or folder cannot be read as one: check permissions and what "
    "was put there by hand",
    "ancestry-mismatch": "rebuild the ancestry file from the json parent chain, or push the "
    "image again",
    "missing-image-file": "push the image again from a client that still has it, or remove "
    "the tags that need it",
    "inprogress-image": "a push never finished: push the image again; untagged leftovers "
    "are removed by regtool gc",
    "stale-upload": "an abandoned upload: regtool gc --upload-age removes it",
    "unverifiable-checksum": "nothing to verify the layer against; regtool checks its json and "
    "layer exist only",
    "tarsum-mismatch": "tarsum v0 is fragile (tar details matter); the simple checksum is the "
    "one to trust when both exist",
    "junk-file": "not part of the layout: move it out of the storage root",
    "symlink": "regtool never follows symbolic links inside the storage (ls, verify and gc "
    "skip what is behind one, gc leaves the link in place): replace the link with the real "
    "folder or file, or move it out of the storage root",
    "special-file": "a FIFO, socket or device where the layout has a file or folder: "
    "regtool never opens it; remove it (a registry stores regular files only)",
    "temp-file": "left by an interrupted write: safe to delete when no registry writes",
    "no-layers-folder": "create the repository's _layers folder (and links for its blobs) "
    "before running distribution 2.8.2's garbage-collect",
}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    severity: Severity
    object: str
    path: str
    detail: str
    hint: str


@dataclass(frozen=True, slots=True)
class Checked:
    """What was looked at; `bytes` counts bytes re-hashed (0 with --quick)."""

    layout: str
    repositories: int = 0
    tags: int = 0
    links: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    images: int = 0
    uploads: int = 0


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: Checked
    problems: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")


class Progress(Protocol):
    """Where the hasher reports: the total once, then bytes as they are read (any thread)."""

    def start(self, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


@dataclass(slots=True)
class Findings:
    """Collects findings; the same (kind, path) is reported once, with its first detail."""

    items: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def add(self, kind: str, severity: Severity, obj: str, path: str, detail: str) -> None:
        key = (kind, path)
        if key not in self.items:
            self.items[key] = Finding(kind, severity, obj, path, detail, HINTS[kind])

    def foreign(self, path: str, what: str, obj: str | None = None) -> None:
        """A link or special file met where the layout has a file or folder (an error).

        `what` says what it is ("a symbolic link to '..'", "a FIFO"), or is a whole detail
        that starts so.
        """
        is_link = what.startswith("a symbolic link")
        kind = "symlink" if is_link else "special-file"
        done = "not followed" if is_link else "never opened"
        detail = what if ": " in what else f"{what}: {done}"
        self.add(kind, "error", obj or path.rpartition("/")[2], path, detail)

    def has(self, kind: str, path: str) -> bool:
        return (kind, path) in self.items

    def sorted(self) -> tuple[Finding, ...]:
        order = {"error": 0, "warning": 1}
        return tuple(sorted(self.items.values(), key=lambda f: (order[f.severity], f.kind, f.path)))


# -- hashing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashJob:
    """Hash `path` (after `prefix`) with `algorithm`, or take its tarsum when `tarsum`."""

    key: str
    path: str
    size: int
    algorithm: str = "sha256"
    prefix: bytes = b""
    tarsum: bool = False


@dataclass(frozen=True, slots=True)
class HashResult:
    job: HashJob
    value: str | None  # "alg:hex" or "tarsum+sha256:hex"
    error: str | None = None


def hash_all(
    driver: StorageDriver,
    jobs: list[HashJob],
    workers: int,
    progress: Progress | None = None,
) -> list[HashResult]:
    """Run every job on `workers` threads (hashlib and reads release the GIL), big first."""
    ordered = sorted(jobs, key=lambda job: job.size, reverse=True)
    if progress is not None:
        progress.start(sum(job.size for job in ordered))
    advance = progress.advance if progress is not None else None
    results: list[HashResult] = []
    if workers <= 1 or len(ordered) <= 1:
        buffer = bytearray(CHUNK)
        results.extend(_run(driver, job, buffer, advance) for job in ordered)
        return results
    lock = threading.Lock()
    pending = iter(ordered)

    def worker() -> None:
        buffer = bytearray(CHUNK)
        while True:
            with lock:
                job = next(pending, None)
            if job is None:
                return
            results.append(_run(driver, job, buffer, advance))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _run(
    driver: StorageDriver,
    job: HashJob,
    buffer: bytearray,
    advance: Callable[[int], None] | None,
) -> HashResult:
    try:
        with driver.open(job.path) as handle:
            if job.tarsum:  # v1 only: tarsum (and tarfile) load when a v1 tree needs them
                from regtool.model.tarsum import TarsumError, tarsum_v0

                try:
                    value = tarsum_v0(job.prefix, handle)
                except TarsumError as exc:
                    return HashResult(job, None, f"cannot read the layer as a tar: {exc}")
                if advance is not None:
                    advance(job.size)
                return HashResult(job, value)
            hasher = hashlib.new(job.algorithm, job.prefix)
            view = memoryview(buffer)
            while True:
                count = handle.readinto(buffer)  # type: ignore[attr-defined]  # a file object
                if not count:
                    break
                hasher.update(view[:count] if count < CHUNK else view)
                if advance is not None:
                    advance(count)
        return HashResult(job, f"{job.algorithm}:{hasher.hexdigest()}")
    except StorageError as exc:
        return HashResult(job, None, exc.message)
    except OSError as exc:
        return HashResult(job, None, exc.strerror or str(exc))


# -- entry point -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    jobs: int = 1
    quick: bool = False
    upload_age: float = DEFAULT_UPLOAD_AGE
    now: float = 0.0
    progress: Progress | None = None


def verify(
    reader: RegistryReader,
    *,
    jobs: int = 1,
    quick: bool = False,
    upload_age: float = DEFAULT_UPLOAD_AGE,
    now: float | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check a whole storage; findings never raise, an unreadable root does."""
    options = Options(
        jobs=max(1, jobs),
        quick=quick,
        upload_age=upload_age,
        now=time.time() if now is None else now,
        progress=progress,
    )
    if reader.layout == "v1":
        from regtool.ops.verify_v1 import verify_v1

        return verify_v1(reader, options)  # type: ignore[arg-type]
    from regtool.ops.verify_v2 import verify_v2

    return verify_v2(reader, options)  # type: ignore[arg-type]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def referrers(labels: Iterable[str], shown: int = 3) -> str:
    unique = list(dict.fromkeys(labels))
    text = ", ".join(unique[:shown])
    if len(unique) > shown:
        text += f" and {len(unique) - shown} more"
    return text
