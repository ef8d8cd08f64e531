"""Stored layers by diff_id: which gzip blob already holds a given uncompressed tar.

`import` and `migrate` recompress raw, xz and bzip2 layers into gzip; the bytes they make
differ from the blob a client pushed for the same tar, so without this lookup every such
layer would be stored twice. The index pairs each tagged image's config `rootfs.diff_ids`
with its manifest's layers; it is built once per run, on first use, reading only manifests
and configs (in batches on an object store, through the Store's bulk reader).
"""

from __future__ import annotations

from regtool.layout.store import Store
from regtool.layout.v2 import paths as v2paths
from regtool.model import mediatype as mt

GZIP_LAYERS = frozenset({mt.DOCKER_LAYER, mt.OCI_LAYER_GZIP})


class DiffIdIndex:
    """diff_id -> digest of a stored gzip layer blob with that content."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._found: dict[str, str] | None = None

    def get(self, diff_id: str) -> str | None:
        """A stored blob whose uncompressed tar is `diff_id`, or None."""
        if self._found is None:
            self._found = build_index(self.store)
        digest = self._found.get(diff_id)
        if digest is not None and not self.store.driver.exists(v2paths.blob_data(digest)):
            return None  # named by a manifest, but not stored (any more)
        return digest

    def add(self, diff_id: str, digest: str) -> None:
        """A layer this run wrote: later lookups find it too."""
        if self._found is None:
            self._found = build_index(self.store)
        self._found.setdefault(diff_id, digest)


def build_index(store: Store) -> dict[str, str]:
    if store.layout == "v1":
        return {}
    reader = store.bulk_reader()
    reader.prefetch()
    found: dict[str, str] = {}
    for repo in reader.repositories():
        for link in reader.tags(repo.name):
            if link.digest is None:
                continue
            for image in reader.resolve(repo.name, link.digest, detail=True).images:
                for layer in image.layers:
                    if layer.diff_id and layer.media_type in GZIP_LAYERS:
                        found.setdefault(layer.diff_id, layer.id)
    return found
