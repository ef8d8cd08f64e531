"""Where `import` and `migrate` write: a local v2 root or an S3 bucket, opened as one Store.

A local root is created as an empty tree when missing; its files are not fsync'ed one by
one (thousands of small links made that the main cost) and its failed writes leave no
empty folder (staging.Tidying). A bucket (a config whose storage is `s3`) must exist; its
upload sessions are the Store's own (chunk objects in the bucket), and a write is durable
once its PUT is answered, so `flush()` has nothing to do there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import LockHeldError, RootError, UsageError
from regtool.layout.detect import locate
from regtool.layout.store import LockTimeout, Store, open_storage
from regtool.layout.v2.uploads import FilesystemUploads, UploadSessions
from regtool.layout.v2.writer import V2Writer
from regtool.ops.staging import Stage, Tidying

LOCK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where to write: a local root, or (root None) the S3 bucket of `config`."""

    root: Path | None
    config: Path | None = None
    v1_hint: str = "migrate writes v2"  # what to say when the destination is a v1 tree

    @property
    def bucket(self) -> bool:
        return self.root is None

    def check(self) -> str:
        """Refuse a destination that cannot take a v2 tree (a file, a v1 tree, a missing
        bucket, wrong credentials: RootError or UsageError) and name it for messages.
        Writes nothing."""
        if self.root is None:
            store = open_storage(None, self.config, bulk=False)
            if store.layout == "v1":
                raise UsageError(f"destination {store.location} holds a v1 tree; {self.v1_hint}")
            return store.location
        if self.root.exists():
            if not self.root.is_dir():
                raise RootError(f"destination {self.root} is not a folder")
            if locate(self.root)[1] == "v1":
                raise UsageError(f"destination {self.root} holds a v1 tree; {self.v1_hint}")
        return str(self.root)


@dataclass(frozen=True, slots=True)
class Destination:
    """An opened destination: its Store, a writer and the upload sessions to stage in."""

    store: Store
    writer: V2Writer
    uploads: UploadSessions

    def stage(self) -> Stage:
        return Stage(self.writer, self.uploads, folders=self.store.root is not None)

    def flush(self) -> None:
        """Everything written so far is durable before anything written after (a local
        disk: os.sync; a bucket holds an object once its PUT is answered)."""
        if self.store.root is not None:
            os.sync()


def open_destination(target: Target) -> Destination:
    """Open `target` for writing (a missing local root is created empty)."""
    target.check()
    if target.root is None:
        store = open_storage(None, target.config, writable=True, bulk=False)
        if store.writer is None or store.uploads is None:  # check() refused v1 already
            raise UsageError(f"destination {store.location} cannot be written")
        return Destination(store, store.writer, store.uploads)
    target.root.mkdir(parents=True, exist_ok=True)
    store = open_storage(target.root, writable=True, fsync=False)
    writer = V2Writer(Tidying(store.driver))
    return Destination(store, writer, FilesystemUploads(writer, fsync=False))


class SharedLock:
    """The store's lock, shared, whose timeout becomes LockHeldError."""

    def __init__(self, store: Store) -> None:
        self._cm = store.lock(exclusive=False, timeout=LOCK_TIMEOUT)

    def __enter__(self) -> None:
        try:
            self._cm.__enter__()
        except LockTimeout as exc:
            raise LockHeldError(
                f"{exc.path} is held by another regtool (gc or rm?)",
                hint="wait for it to finish and run again",
            ) from None

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)
