"""Where a test runs regtool: on a v2 tree on the local disk, or on a copy of it in an S3
bucket of the session's Ceph RGW (the `place_of` fixture of tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.rgw import bucket_objects

BUCKET_PREFIX = "registry/"  # bucket_copy's rootdirectory


@dataclass(frozen=True)
class Place:
    """`args` select it on a command line (`--root DIR` or `--config S3.yml`)."""

    args: tuple[str, str]
    root: Path  # the local tree (a bucket's source, as it was when copied)
    cluster: Any = None
    config: Path | None = None

    @property
    def on_bucket(self) -> bool:
        return self.config is not None

    def contents(self) -> dict[str, Any]:
        """Everything stored (the lock file aside): proof that nothing was written."""
        if self.config is None:
            from tests.conftest import snapshot

            found = snapshot(self.root)
            found.pop(".regtool.lock", None)
            return found
        return bucket_objects(self.cluster, self.config)

    def has(self, key: str) -> bool:
        """Whether the object `key` (a path below the storage root) is stored."""
        if self.config is None:
            return (self.root / key).is_file()
        return BUCKET_PREFIX + key in bucket_objects(self.cluster, self.config)
