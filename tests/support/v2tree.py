"""Small writes into a v2 tree for tests: a blob by its bytes, a link by its key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from regtool.layout.v2 import paths


def put_blob(root: Path, data: bytes) -> str:
    """Store `data` as a blob (no link to it); returns its digest."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    path = root / paths.blob_data(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def put_link(root: Path, key: str, digest: str) -> None:
    """Write the link file `key` (a tag's current link, a revision link...) naming `digest`."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest)
