"""What a scan of a v2 tree on an object store reads, settled or fetched ahead in bulk.

A scan (ls, gc, verify) reads every link and every manifest. Most links need no read at all:
a link holds the digest its folder is named after, and the listing's MD5 proves it; a tag's
`current/link` holds one of the digests in the tag's own index. What is left, and every
manifest a revision names, is fetched in one concurrent batch (`Snapshot.prefetch`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import cast

from regtool.layout.reader import Repository
from regtool.layout.v2 import paths
from regtool.layout.v2.reader import MAX_LINK_BYTES, V2Reader
from regtool.model import mediatype as mt
from regtool.model.config import MAX_CONFIG_BYTES
from regtool.model.manifest import MAX_MANIFEST_BYTES, ImageManifest
from regtool.storage.driver import FileInfo, StorageDriver, StorageError
from regtool.storage.snapshot import Snapshot

AREAS = (paths.REPOSITORIES, paths.BLOBS)
_REPO_PREFIX = paths.REPOSITORIES + "/"
_BLOB_PREFIX = paths.BLOBS + "/"
_MARKS = (paths.LAYERS, paths.MANIFESTS)
WINDOW_KEYS = 8192  # objects listed per window of a streamed scan (about 8 MB held)


def _named_digest(parts: list[str]) -> str | None:
    """`<alg>/<hex>/link` -> "alg:hex" when the folder names look like a digest."""
    if len(parts) == 3 and parts[2] == paths.LINK and paths.is_digest_folder(parts[0], parts[1]):
        return f"{parts[0]}:{parts[1]}"
    return None


def warm(snapshot: Snapshot, area: str) -> None:
    """Settle the links of the repositories area and prefetch the rest and the manifests."""
    if area == paths.REPOSITORIES:
        settle(snapshot, snapshot.walk(area))


def settle(snapshot: Snapshot, infos: Iterable[FileInfo]) -> None:
    """Settle the links among `infos` (listed in `snapshot`) and prefetch the rest, and the
    manifests they name, in one batch."""
    unsettled: list[str] = []
    naming: list[str] = []  # unsettled links that name a manifest (revisions, current tags)
    manifests: set[str] = set()
    current: dict[str, str] = {}  # current link -> its tag folder
    candidates: dict[str, set[str]] = defaultdict(set)  # tag folder -> digests in its index
    for info in infos:
        if not info.path.endswith("/" + paths.LINK) or info.size > MAX_LINK_BYTES:
            continue
        _, marker, rest = info.path[len(_REPO_PREFIX) :].partition(f"/{paths.MANIFESTS}/")
        parts = rest.split("/")
        if not marker:
            _, marker, rest = info.path.partition(f"/{paths.LAYERS}/")
            digest = _named_digest(rest.split("/")) if marker else None
        elif parts[0] == "revisions":
            digest = _named_digest(parts[1:])
            if digest is not None:
                manifests.add(digest)
        elif parts[0] == paths.TAGS and len(parts) == 4 and parts[2:] == ["current", "link"]:
            current[info.path] = info.path[: -len("/current/link")]
            continue
        elif parts[0] == paths.TAGS and len(parts) == 6 and parts[2] == paths.TAG_INDEX:
            digest = _named_digest(parts[3:])
            if digest is not None:
                candidates[info.path.rpartition(f"/{paths.TAG_INDEX}/")[0]].add(digest)
        else:
            digest = None
        if digest is None or not snapshot.settle(info.path, digest.encode()):
            unsettled.append(info.path)
            if marker and parts[0] == "revisions":
                naming.append(info.path)
    for link, tag in current.items():
        if not any(snapshot.settle(link, d.encode()) for d in sorted(candidates.get(tag, ()))):
            unsettled.append(link)
            naming.append(link)
    snapshot.prefetch(unsettled, MAX_LINK_BYTES)
    for link in naming:  # the manifests they name are read next (not layers: too big)
        try:
            manifests.add(snapshot.get(link, MAX_LINK_BYTES).decode("ascii").strip())
        except (UnicodeDecodeError, StorageError):
            continue  # the scan reads it again and reports it
    snapshot.prefetch(
        sorted(paths.blob_data(d) for d in manifests if _is_digest(d)), MAX_MANIFEST_BYTES
    )


def _is_digest(text: str) -> bool:
    algorithm, _, hexpart = text.partition(":")
    return paths.is_digest_folder(algorithm, hexpart)


def prefetch_configs(reader: V2Reader, infos: Iterable[FileInfo] | None = None) -> None:
    """Fetch the config of every stored manifest (every revision among `infos`, by default
    the whole repositories area) in one batch: ls and layers read them all."""
    prefetch = getattr(reader.driver, "prefetch", None)
    if prefetch is None:
        return
    configs: set[str] = set()
    marker = f"/{paths.MANIFESTS}/revisions/"
    for info in reader.driver.walk(paths.REPOSITORIES) if infos is None else infos:
        _, found, rest = info.path.partition(marker)
        digest = _named_digest(rest.split("/")) if found else None
        if digest is None:
            continue
        manifest = reader.manifest(digest)
        if isinstance(manifest, ImageManifest):
            config = manifest.config
            if mt.is_image_config(config.media_type) and config.size <= MAX_CONFIG_BYTES:
                configs.add(paths.blob_data(config.digest))
    prefetch(sorted(configs), MAX_CONFIG_BYTES)


# -- streamed scans: the tree a window at a time ------------------------------------------------
def _owner(path: str) -> tuple[str, str] | None:
    """(repository, marker) of an object below the repositories area: the folders above its
    first `_` folder, and that folder when it is `_layers`, `_manifests` or `_uploads`;
    None for anything else. A repository's own objects share the prefix `<name>/_`, so they
    come in one run of an object store's key order."""
    if not path.startswith(_REPO_PREFIX):
        return None
    parts = path[len(_REPO_PREFIX) :].split("/")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("_"):
            markers = (paths.LAYERS, paths.MANIFESTS, paths.UPLOADS)
            return ("/".join(parts[:i]), part) if i and part in markers else None
    return None


def repository_of(path: str) -> str | None:
    owner = _owner(path)
    return owner[0] if owner is not None else None


def fan_of(path: str) -> str | None:
    """`<algorithm>/<two hex>` of an object below the blobs area (None above the fans)."""
    if not path.startswith(_BLOB_PREFIX):
        return None
    algorithm, _, rest = path[len(_BLOB_PREFIX) :].partition("/")
    fan, _, below = rest.partition("/")
    return f"{algorithm}/{fan}" if below else None


def repository_windows(
    reader: V2Reader, max_keys: int | None = None, *, configs: bool = False, uploads: bool = False
) -> Iterator[tuple[list[Repository], V2Reader]] | None:
    """(repositories, a reader holding just their objects, settled and prefetched; with
    `configs`, their images' configs too; with `uploads`, folders holding only `_uploads`
    count, as in `V2Reader.repositories`), window after window in key order; None when the
    reader's driver cannot stream (a disk: its own scan is fast and flat already)."""
    if not hasattr(reader.driver, "windows"):
        return None
    snapshot = cast(Snapshot, reader.driver)

    def windows() -> Iterator[tuple[list[Repository], V2Reader]]:
        for units, infos in snapshot.windows(
            paths.REPOSITORIES, repository_of, max_keys or WINDOW_KEYS
        ):
            # a folder is a repository when it holds _layers or _manifests (as the reader
            # finds them): uploads alone make none, unless asked for
            found = {o for o in (_owner(i.path) for i in infos) if o is not None}
            marks = (*_MARKS, paths.UPLOADS) if uploads else _MARKS
            names = [n for n in units if any((n, m) in found for m in marks)]
            repositories = [
                Repository(n, V2Reader.repository_issues(n, {m for m in _MARKS if (n, m) in found}))
                for n in names
            ]
            areas = [
                f"{paths.REPOSITORIES}/{name}/{marker}"
                for name in names
                for marker in (paths.LAYERS, paths.MANIFESTS, paths.UPLOADS)
            ]
            view = snapshot.window(areas, infos)
            settle(view, infos)
            windowed = V2Reader(view, None)
            if configs:
                prefetch_configs(windowed, infos)
            yield repositories, windowed

    return windows()


def blob_windows(
    reader: V2Reader, max_keys: int | None = None
) -> Iterator[tuple[list[tuple[str, str]], V2Reader]] | None:
    """((algorithm, fan) pairs, a reader holding just their blobs), window after window;
    None when the driver cannot stream."""
    if not hasattr(reader.driver, "windows"):
        return None
    snapshot = cast(Snapshot, reader.driver)

    def windows() -> Iterator[tuple[list[tuple[str, str]], V2Reader]]:
        for fans, infos in snapshot.windows(paths.BLOBS, fan_of, max_keys or WINDOW_KEYS):
            view = snapshot.window([f"{paths.BLOBS}/{fan}" for fan in fans], infos)
            pairs = [(a, f) for a, _, f in (fan.partition("/") for fan in fans)]
            yield pairs, V2Reader(view, None)

    return windows()


def underneath(reader: V2Reader) -> StorageDriver:
    """The store a streamed scan's reader views (for the few reads outside its windows)."""
    return cast(Snapshot, reader.driver).driver
