"""Read a distribution v2 tree: repositories, tags, manifests, configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from regtool.layout.listing import ForeignNotes
from regtool.layout.reader import (
    Blob,
    Image,
    Issue,
    Layer,
    Layout,
    RegistryReader,
    Repository,
    Resolved,
    TagLink,
)
from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from regtool.model.config import MAX_CONFIG_BYTES, ConfigError, ImageConfig, parse_config
from regtool.model.digest import DigestError, parse_digest
from regtool.model.manifest import (
    MAX_MANIFEST_BYTES,
    ImageIndex,
    ImageManifest,
    Manifest,
    ManifestError,
    Schema1Manifest,
    parse_manifest,
)
from regtool.storage.driver import (
    PathNotFound,
    StorageDriver,
    StorageError,
)

# A link holds one digest (at most 135 bytes); the rest is room for stray white space.
MAX_LINK_BYTES = 1024


class LinkError(Exception):
    """A link file that is missing or malformed; `issue` says which and why."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class V2Reader(ForeignNotes):
    layout: Layout = "v2"

    def __init__(self, driver: StorageDriver, root: Path | None) -> None:
        self.driver = driver
        self.root = root
        self._manifests: dict[str, Manifest | Issue] = {}
        self._configs: dict[str, ImageConfig | Issue] = {}
        self._children: dict[tuple[str, bool], Image | Issue] = {}
        self._foreign: dict[str, Issue] = {}

    # -- links ---------------------------------------------------------------------------
    def read_link(self, path: str) -> str:
        try:
            text = self.driver.get(path, MAX_LINK_BYTES).decode("ascii", "replace")
        except PathNotFound:
            raise LinkError(Issue(path, "link file missing")) from None
        except StorageError as exc:
            raise LinkError(Issue(path, f"unreadable link: {exc.message}")) from None
        try:
            return parse_digest(text)
        except DigestError as exc:
            raise LinkError(Issue(path, f"bad link: {exc}")) from None

    # -- listing -------------------------------------------------------------------------
    def repositories(self, *, uploads: bool = False) -> list[Repository]:
        """Folders holding `_layers` or `_manifests`; with `uploads`, also those holding
        only `_uploads` (a first push or an import that never finished: gc purges them)."""
        found: list[Repository] = []
        stack = [""]
        while stack:
            name = stack.pop()
            prefix = f"{paths.REPOSITORIES}/{name}" if name else paths.REPOSITORIES
            entries = self._list(prefix)
            markers = {e.name for e in entries if e.is_dir and paths.is_repository_marker(e.name)}
            if name and markers:
                found.append(Repository(name, self.repository_issues(name, markers)))
            elif name and uploads and any(e.is_dir and e.name == paths.UPLOADS for e in entries):
                found.append(Repository(name, ()))
            children = [e.name for e in entries if e.is_dir and not e.name.startswith("_")]
            stack.extend(f"{name}/{child}" if name else child for child in reversed(children))
        found.sort(key=lambda repo: repo.name)
        return found

    @staticmethod
    def repository_issues(name: str, markers: set[str]) -> tuple[Issue, ...]:
        if paths.LAYERS not in markers:
            return (
                Issue(
                    paths.repository(name),
                    "no _layers folder: distribution 2.8.2 lists no such repository and its "
                    "garbage-collect sweeps every blob only this repository uses",
                ),
            )
        return ()

    def tags(self, repository: str, *, pushed: bool = False) -> list[TagLink]:
        result = []
        issue: Issue | None
        base = paths.tags_dir(repository)
        for entry in self._list(base):
            if entry.foreign is not None:
                path = f"{base}/{entry.name}"
                issue = Issue(path, f"{entry.foreign}, not followed")
                result.append(TagLink(repository, entry.name, None, path, issue))
                continue
            if not entry.is_dir:
                continue
            link = paths.tag_current_link(repository, entry.name)
            try:
                digest: str | None = self.read_link(link)
                issue = None
            except LinkError as exc:
                digest, issue = None, exc.issue
            when = self._mtime(link) if pushed and digest is not None else None
            result.append(TagLink(repository, entry.name, digest, link, issue, when))
        return result

    def _mtime(self, path: str) -> float | None:
        try:
            return self.driver.stat(path).mtime
        except StorageError:
            return None

    def revisions(self, repository: str) -> list[tuple[str, str | None, Issue | None]]:
        """(link path, digest or None, issue) for every revision link of a repository."""
        result: list[tuple[str, str | None, Issue | None]] = []
        base = paths.revisions_dir(repository)
        for algorithm in self._list(base):
            if not algorithm.is_dir:
                continue
            for entry in self._list(f"{base}/{algorithm.name}"):
                link = f"{base}/{algorithm.name}/{entry.name}/{paths.LINK}"
                if not entry.is_dir or not self.driver.exists(link):
                    continue  # an emptied folder a manifest DELETE leaves behind, or junk
                try:
                    result.append((link, self.read_link(link), None))
                except LinkError as exc:
                    result.append((link, None, exc.issue))
        return result

    def prefetch(self) -> None:
        """Before resolving every tag: on a bulk view of an object store, fetch the configs
        of every stored manifest in one batch (a no-op on a disk)."""
        if getattr(self.driver, "prefetch", None) is not None:
            from regtool.layout.v2.bulk import prefetch_configs

            prefetch_configs(self)

    def windows(
        self, *, configs: bool = False
    ) -> Iterator[tuple[list[Repository], RegistryReader]] | None:
        from regtool.layout.v2.bulk import repository_windows

        return repository_windows(self, configs=configs)

    def has_manifest(self, repository: str, digest: str) -> bool:
        return self.driver.exists(paths.revision_link(repository, digest))

    def forget(self) -> None:
        """Drop the manifests and configs read so far: a scan of the whole tree calls it
        when done with a repository, so its memory does not grow with the tree. A bulk view
        of an object store keeps them (its reads were batched in advance)."""
        if getattr(self.driver, "prefetch", None) is None:
            self._manifests.clear()
            self._configs.clear()
            self._children.clear()

    # -- manifests -----------------------------------------------------------------------
    def manifest(self, digest: str) -> Manifest | Issue:
        """The parsed manifest stored under `digest`, or the issue that prevents it."""
        cached = self._manifests.get(digest)
        if cached is None:
            cached = self._load_manifest(digest)
            self._manifests[digest] = cached
        return cached

    def _load_manifest(self, digest: str) -> Manifest | Issue:
        path = paths.blob_data(digest)
        try:
            raw = self.driver.get(path, MAX_MANIFEST_BYTES)  # a link may name any blob
        except PathNotFound:
            return Issue(path, f"manifest blob {digest} is missing")
        except StorageError as exc:
            return Issue(path, f"unreadable manifest: {exc.message}")
        try:
            return parse_manifest(raw)
        except ManifestError as exc:
            return Issue(path, f"unreadable manifest: {exc}")

    def config(self, digest: str) -> ImageConfig | Issue:
        cached = self._configs.get(digest)
        if cached is None:
            path = paths.blob_data(digest)
            try:
                cached = parse_config(self.driver.get(path, MAX_CONFIG_BYTES))
            except PathNotFound:
                cached = Issue(path, f"config blob {digest} is missing")
            except StorageError as exc:
                cached = Issue(path, f"unreadable config: {exc.message}")
            except ConfigError as exc:
                cached = Issue(path, f"unreadable config: {exc}")
            self._configs[digest] = cached
        return cached

    def resolve(self, repository: str, digest: str, *, detail: bool = True) -> Resolved:
        manifest = self.manifest(digest)
        if isinstance(manifest, Issue):
            return Resolved(digest, "", False, (), (manifest,))
        issues: list[Issue] = []
        if isinstance(manifest, ImageIndex):
            images = []
            for child, platform in self._leaves(digest, manifest):
                image = self._child(child, platform, detail)
                if isinstance(image, Issue):
                    issues.append(image)
                else:
                    images.append(image)
            subject = manifest.subject.digest if manifest.subject else None
            return Resolved(
                digest, manifest.media_type, True, tuple(images), tuple(issues), subject
            )
        image = self._image(digest, manifest, None, issues, detail)
        subject = getattr(manifest.subject, "digest", None)
        return Resolved(digest, manifest.media_type, False, (image,), tuple(issues), subject)

    def _leaves(self, digest: str, index: ImageIndex) -> list[tuple[str, str | None]]:
        """(digest, platform) of every image below `index`, in order, through nested indexes
        to any depth (as gc marks them); each nested index is followed once."""
        found: list[tuple[str, str | None]] = []
        seen = {digest}
        stack = [iter(index.manifests)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            nested = self.manifest(child.digest)
            if isinstance(nested, ImageIndex):
                if child.digest not in seen:
                    seen.add(child.digest)
                    stack.append(iter(nested.manifests))
                continue
            found.append((child.digest, str(child.platform) if child.platform else None))
        return found

    def _child(self, digest: str, platform: str | None, detail: bool) -> Image | Issue:
        cached = self._children.get((digest, detail))
        if cached is None:
            manifest = self.manifest(digest)
            if isinstance(manifest, Issue):
                cached = Issue(manifest.path, f"index child: {manifest.message}")
            elif isinstance(manifest, ImageIndex):
                cached = Issue(paths.blob_data(digest), "nested index is not followed")
            else:
                child_issues: list[Issue] = []
                cached = self._image(digest, manifest, platform, child_issues, detail)
                if child_issues:
                    cached = child_issues[0]
            self._children[(digest, detail)] = cached
        return cached

    def _image(
        self,
        digest: str,
        manifest: ImageManifest | Schema1Manifest,
        platform: str | None,
        issues: list[Issue],
        detail: bool = True,
    ) -> Image:
        if isinstance(manifest, Schema1Manifest):
            return self._schema1_image(digest, manifest, issues)
        config_desc = manifest.config
        config = None
        if mt.is_image_config(config_desc.media_type) and config_desc.size <= MAX_CONFIG_BYTES:
            loaded = self.config(config_desc.digest)
            if isinstance(loaded, Issue):
                issues.append(loaded)
            else:
                config = loaded
        if detail:
            layers = self._detailed_layers(manifest, config)
        else:
            layers = [Layer(d.digest, d.size, d.media_type) for d in manifest.layers]
        return Image(
            digest=digest,
            media_type=manifest.media_type,
            platform=platform or (config.platform if config else None),
            config=Blob(config_desc.digest, config_desc.size),
            layers=tuple(layers),
            created=config.created if config else None,
            artifact_type=manifest.artifact_type,
        )

    @staticmethod
    def _detailed_layers(manifest: ImageManifest, config: ImageConfig | None) -> list[Layer]:
        """Layers with diff_id and the history entry that made each, when the config says."""
        history = config.layer_history() if config else ()
        diff_ids = config.diff_ids if config else ()
        layers = []
        for i, desc in enumerate(manifest.layers):
            entry = history[i] if i < len(history) else None
            layers.append(
                Layer(
                    id=desc.digest,
                    size=desc.size,
                    media_type=desc.media_type,
                    diff_id=diff_ids[i] if i < len(diff_ids) else None,
                    created_by=entry.created_by if entry else None,
                    created=entry.created if entry else None,
                )
            )
        return layers

    def _schema1_image(self, digest: str, manifest: Schema1Manifest, issues: list[Issue]) -> Image:
        layers = []
        for blob in reversed(manifest.fs_layers):
            path = paths.blob_data(blob)
            try:
                size = self.driver.stat(path).size
            except StorageError:
                issues.append(Issue(path, f"schema1 layer {blob} is missing"))
                size = 0
            layers.append(Layer(id=blob, size=size, media_type=mt.DOCKER_LAYER))
        return Image(
            digest=digest,
            media_type=manifest.media_type,
            platform=f"linux/{manifest.architecture}" if manifest.architecture else None,
            config=None,
            layers=tuple(layers),
        )
