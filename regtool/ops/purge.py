"""Upload purging, as distribution's `storage.maintenance.uploadpurging`: upload sessions
started longer ago than `age` are removed, whatever their state (never finished, given
up, or complete but never committed).

Sessions are found below every folder of `repositories/` that holds `_uploads`, including
folders that hold nothing else (a `regtool import -` killed mid-stream leaves
`repositories/regtool-import/_uploads/`); `_layers` and `_manifests` are not entered. A
session's start is its `startedat` (as 2.8.2 writes it), else the newest of its files.
Sessions are removed through the Store's `uploads` (on a disk the emptied folders above
go too); a session another request holds right now is left for the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from regtool.layout.store import Store
from regtool.layout.v2 import paths
from regtool.storage.driver import ObjectBusy, PathNotFound, StorageError

MAX_DEPTH = 64  # namespace folders below repositories/ (names are far shorter)
MAX_STARTEDAT_BYTES = 64


@dataclass(frozen=True, slots=True)
class StaleSession:
    repo: str
    upload_id: str
    started: float  # seconds since the epoch (0: nothing in it tells)
    size: int


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: tuple[StaleSession, ...]  # removed (or, in a dry run, that would be)
    busy: tuple[StaleSession, ...] = ()  # held by a request: left for the next run
    failed: tuple[tuple[StaleSession, str], ...] = ()
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.purged)


def upload_repositories(store: Store) -> Iterator[str]:
    """Every repository folder (or folder of nothing but `_uploads`) holding `_uploads`."""
    driver = store.driver

    def below(prefix: str, name: str, depth: int) -> Iterator[str]:
        if depth > MAX_DEPTH:
            return
        try:
            children = driver.list(prefix)
        except PathNotFound:
            return
        for child in children:
            if not child.is_dir or child.foreign is not None:
                continue
            if child.name == paths.UPLOADS:
                if name:
                    yield name
            elif child.name not in (paths.LAYERS, paths.MANIFESTS):
                inner = f"{name}/{child.name}" if name else child.name
                yield from below(f"{prefix}/{child.name}", inner, depth + 1)

    yield from below(paths.REPOSITORIES, "", 0)


def stale_sessions(store: Store, age: float, now: float) -> Iterator[StaleSession]:
    """The sessions started before `now - age`."""
    driver = store.driver
    cutoff = now - age
    for repo in upload_repositories(store):
        try:
            sessions = driver.list(paths.uploads_dir(repo))
        except PathNotFound:
            continue
        for child in sessions:
            if not child.is_dir or child.foreign is not None:
                continue
            started, size = _started(store, repo, child.name)
            if started < cutoff:
                yield StaleSession(repo, child.name, started, size)


def _started(store: Store, repo: str, upload_id: str) -> tuple[float, int]:
    """(when the session started, the bytes it holds)."""
    driver = store.driver
    newest, size = 0.0, 0
    try:
        for info in driver.walk(paths.upload_dir(repo, upload_id)):
            newest = max(newest, info.mtime)
            size += info.size
    except StorageError:
        pass
    try:
        text = driver.get(paths.upload_startedat(repo, upload_id), MAX_STARTEDAT_BYTES)
        stamp = datetime.strptime(text.decode("ascii").strip(), "%Y-%m-%dT%H:%M:%SZ")
    except (StorageError, UnicodeDecodeError, ValueError):
        return newest, size
    return stamp.replace(tzinfo=UTC).timestamp(), size


def purge_uploads(
    store: Store,
    age: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
    busy: Callable[[str], bool] = lambda upload_id: False,
) -> PurgeResult:
    """Remove the sessions older than `age` seconds (see the module); `busy(upload_id)`
    tells sessions the caller itself has a request on (left alone)."""
    uploads = store.uploads
    if uploads is None:
        raise ValueError("purging uploads needs a store opened with open_storage(writable=True)")
    found = list(stale_sessions(store, age, now if now is not None else time.time()))
    if dry_run:
        return PurgeResult(tuple(found), dry_run=True)
    purged: list[StaleSession] = []
    held: list[StaleSession] = []
    failed: list[tuple[StaleSession, str]] = []
    for session in found:
        if busy(session.upload_id):
            held.append(session)
            continue
        try:
            try:
                with uploads.hold(session.repo, session.upload_id):
                    uploads.cancel(session.repo, session.upload_id)
            except PathNotFound:  # no startedat to hold: a half-made session
                uploads.cancel(session.repo, session.upload_id)
        except ObjectBusy:
            held.append(session)
        except (StorageError, OSError) as exc:
            failed.append((session, str(exc)))
        else:
            purged.append(session)
    return PurgeResult(tuple(purged), tuple(held), tuple(failed))
