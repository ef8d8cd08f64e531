"""Read a legacy v1 tree: repositories/<ns>/<repo>/tag_* naming image ids, images/<id>/ chains."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from regtool.layout.listing import ForeignNotes
from regtool.layout.reader import (
    Image,
    Issue,
    Layer,
    Layout,
    RegistryReader,
    Repository,
    Resolved,
    TagLink,
)
from regtool.layout.v1 import paths
from regtool.model.config import MAX_CONFIG_BYTES, ConfigError, V1Image, parse_v1_json
from regtool.model.digest import is_v1_id
from regtool.model.jsondoc import JsonError, parse_json
from regtool.storage.driver import (
    PathNotFound,
    StorageDriver,
    StorageError,
)

V1_MEDIA_TYPE = "application/vnd.docker.v1.image"
MAX_CHAIN = 1000  # Docker refused images with more than 127 layers; this only stops loops
# A tag file holds one image id (64 bytes); `tag_<name>_json` metadata a few hundred.
MAX_TAG_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class V1ImageInfo:
    """One image folder as found: its json (if readable), layer size and state."""

    id: str
    json: V1Image | None
    layer_size: int | None
    in_progress: bool
    issues: tuple[Issue, ...]


class V1Reader(ForeignNotes):
    layout: Layout = "v1"

    def __init__(self, driver: StorageDriver, root: Path | None) -> None:
        self.driver = driver
        self.root = root
        self._images: dict[str, V1ImageInfo] = {}
        self._chains: dict[str, tuple[tuple[str, ...], tuple[Issue, ...]]] = {}
        self._foreign: dict[str, Issue] = {}

    # -- listing -------------------------------------------------------------------------
    def repositories(self) -> list[Repository]:
        found = []
        for namespace in self._list(paths.REPOSITORIES):
            if not namespace.is_dir:
                continue
            for repo in self._list(paths.namespace_dir(namespace.name)):
                if repo.is_dir:
                    found.append(Repository(f"{namespace.name}/{repo.name}"))
        return found

    def tags(self, repository: str, *, pushed: bool = False) -> list[TagLink]:
        result = []
        for entry in self.driver.list(paths.repository_dir(repository)):
            tag = paths.tag_name(entry.name)
            if tag is None or entry.is_dir:
                continue
            path = paths.tag_file(repository, tag)
            try:
                raw = self.driver.get(path, MAX_TAG_FILE_BYTES)
            except StorageError as exc:
                result.append(TagLink(repository, tag, None, path, Issue(path, exc.message)))
                continue
            content = raw.decode("ascii", "replace").strip()
            if is_v1_id(content):
                when = self._mtime(path) if pushed else None
                result.append(TagLink(repository, tag, content, path, None, when))
            elif tag.endswith("_json") and content.startswith("{"):
                continue  # metadata of a tag whose name starts with '_' (tag_<rest>_json)
            else:
                issue = Issue(path, f"tag file does not hold an image id: {content[:40]!r}")
                result.append(TagLink(repository, tag, None, path, issue))
        return result

    def _mtime(self, path: str) -> float | None:
        try:
            return self.driver.stat(path).mtime
        except StorageError:
            return None

    def prefetch(self) -> None:
        """Nothing to fetch ahead on a v1 tree."""

    def windows(
        self, *, configs: bool = False
    ) -> Iterator[tuple[list[Repository], RegistryReader]] | None:
        """A v1 tree is read whole."""
        return None

    def has_manifest(self, repository: str, digest: str) -> bool:
        return is_v1_id(digest) and self.driver.exists(paths.image_json(digest))

    # -- images --------------------------------------------------------------------------
    def image(self, image_id: str) -> V1ImageInfo:
        cached = self._images.get(image_id)
        if cached is None:
            cached = self._load_image(image_id)
            self._images[image_id] = cached
        return cached

    def _load_image(self, image_id: str) -> V1ImageInfo:
        issues: list[Issue] = []
        info: V1Image | None = None
        json_path = paths.image_json(image_id)
        try:
            info = parse_v1_json(self.driver.get(json_path, MAX_CONFIG_BYTES))
            if info.id != image_id:
                issues.append(Issue(json_path, f"json id {info.id[:12]} differs from folder"))
        except PathNotFound:
            issues.append(Issue(json_path, "image json is missing"))
        except StorageError as exc:
            issues.append(Issue(json_path, f"unreadable image json: {exc.message}"))
        except ConfigError as exc:
            issues.append(Issue(json_path, f"unreadable image json: {exc}"))
        layer_size: int | None = None
        layer_path = paths.image_layer(image_id)
        try:
            layer_size = self.driver.stat(layer_path).size
        except PathNotFound:
            issues.append(Issue(layer_path, "image layer is missing"))
        except StorageError as exc:
            issues.append(Issue(layer_path, f"unreadable layer: {exc.message}"))
        in_progress = self.driver.exists(paths.image_inprogress(image_id))
        if in_progress:
            issues.append(Issue(paths.image_inprogress(image_id), "image push never finished"))
        return V1ImageInfo(image_id, info, layer_size, in_progress, tuple(issues))

    def chain(self, image_id: str) -> tuple[tuple[str, ...], tuple[Issue, ...]]:
        """The ancestry of an image, top first, and the issues met finding it.

        `ancestry` is trusted when it starts with the image itself; otherwise the json
        `parent` links are walked instead.
        """
        cached = self._chains.get(image_id)
        if cached is None:
            cached = self._load_chain(image_id)
            self._chains[image_id] = cached
        return cached

    def _load_chain(self, image_id: str) -> tuple[tuple[str, ...], tuple[Issue, ...]]:
        path = paths.image_ancestry(image_id)
        try:
            ancestry = parse_json(self.driver.get(path, MAX_CONFIG_BYTES))
            if (
                isinstance(ancestry, list)
                and ancestry
                and ancestry[0] == image_id
                and all(isinstance(i, str) and is_v1_id(i) for i in ancestry)
            ):
                return tuple(ancestry), ()
            problem = Issue(path, "ancestry does not start with the image itself")
        except PathNotFound:
            problem = Issue(path, "ancestry is missing; following json parents")
        except StorageError as exc:
            problem = Issue(path, f"unreadable ancestry: {exc.message}")
        except JsonError as exc:
            problem = Issue(path, f"unreadable ancestry: {exc}")
        return self.parent_chain(image_id), (problem,)

    def parent_chain(self, image_id: str) -> tuple[str, ...]:
        """Walk json `parent` links from an image down to its base."""
        chain = [image_id]
        current = self.image(image_id)
        while current.json is not None and current.json.parent and len(chain) < MAX_CHAIN:
            if current.json.parent in chain or not is_v1_id(current.json.parent):
                break  # a loop, or `../../x`: never a path to open
            chain.append(current.json.parent)
            current = self.image(current.json.parent)
        return tuple(chain)

    def resolve(self, repository: str, digest: str, *, detail: bool = True) -> Resolved:
        chain, chain_issues = self.chain(digest)
        issues = list(chain_issues)
        layers = []
        for image_id in reversed(chain):
            info = self.image(image_id)
            issues.extend(info.issues)
            layers.append(
                Layer(
                    id=image_id,
                    size=info.layer_size or 0,
                    created_by=info.json.created_by if info.json else None,
                    created=info.json.created if info.json else None,
                )
            )
        top = self.image(digest).json
        platform = f"{top.os}/{top.architecture}" if top and top.os and top.architecture else None
        image = Image(
            digest=digest,
            media_type=V1_MEDIA_TYPE,
            platform=platform,
            config=None,
            layers=tuple(layers),
            created=top.created if top else None,
        )
        return Resolved(digest, V1_MEDIA_TYPE, False, (image,), tuple(issues))
