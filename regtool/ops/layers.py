"""`regtool layers REF`: an image's layers, base first, and which other images' tags share each
one (never the image's own tags, whether REF names it by tag or by digest)."""

from __future__ import annotations

from dataclasses import dataclass

from regtool.errors import UnreadableError, UsageError
from regtool.layout.reader import Image, RegistryReader
from regtool.ops.inventory import Inventory, take_inventory
from regtool.ops.resolve import resolve_reference

DEFAULT_PLATFORM = "linux/amd64"


@dataclass(frozen=True, slots=True)
class LayerRow:
    digest: str
    size: int
    media_type: str | None
    diff_id: str | None
    created_by: str | None
    shared_with: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LayersReport:
    reference: str
    repository: str
    tag: str | None
    digest: str
    manifest: str
    media_type: str
    platform: str | None
    platforms: tuple[str, ...]
    config: str | None
    layers: tuple[LayerRow, ...]
    warnings: tuple[str, ...]
    tags: tuple[str, ...] = ()  # the repository's tags naming `digest` (never in shared_with)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)


def image_layers(
    reader: RegistryReader,
    ref: str,
    platform: str | None = None,
    inventory: Inventory | None = None,
) -> LayersReport:
    """The layers of `ref` and who shares each; `inventory`: one already taken (the server's
    summary), else this takes one."""
    target = resolve_reference(reader, ref)
    if inventory is None:
        inventory = take_inventory(reader)
    resolved = reader.resolve(target.repository, target.digest)
    if not resolved.images:
        detail = "; ".join(str(i) for i in resolved.issues) or "nothing readable"
        raise UnreadableError(
            f"{target.label} cannot be read: {detail}",
            hint="regtool verify reports every damaged file; push the image again to repair it",
        )
    image = _pick(resolved.images, resolved.is_index, platform)
    # the image's own tags (REPO:TAG or REPO@DIGEST alike) share nothing with it: they are it
    own = {
        i
        for i, tagged in enumerate(inventory.tags)
        if tagged.repository == target.repository and tagged.digest == target.digest
    }
    rows = []
    for layer in image.layers:
        others = sorted(
            {
                inventory.tags[i].label
                for i in inventory.users_of(layer.id)
                if i not in own and inventory.tags[i].label != target.label
            }
        )
        rows.append(
            LayerRow(
                layer.id,
                layer.size,
                layer.media_type,
                layer.diff_id,
                layer.created_by,
                tuple(others),
            )
        )
    return LayersReport(
        reference=target.label,
        repository=target.repository,
        tag=target.tag,
        digest=target.digest,
        manifest=image.digest,
        media_type=image.media_type,
        platform=image.platform if resolved.is_index else None,
        platforms=resolved.platforms,
        config=image.config.id if image.config else None,
        layers=tuple(rows),
        warnings=tuple(str(issue) for issue in resolved.issues),
        tags=tuple(sorted(inventory.tags[i].tag for i in own)),
    )


def _pick(images: tuple[Image, ...], is_index: bool, platform: str | None) -> Image:
    if not is_index:
        if platform and images[0].platform and images[0].platform != platform:
            raise UsageError(f"image is {images[0].platform}, not {platform}")
        return images[0]
    if platform:
        for image in images:
            if image.platform == platform:
                return image
        available = ", ".join(i.platform or "unknown" for i in images)
        raise UsageError(f"no platform {platform} in this index", hint=f"available: {available}")
    for image in images:
        if image.platform == DEFAULT_PLATFORM:
            return image
    return images[0]


def report_document(report: LayersReport) -> dict[str, object]:
    """The documented JSON shape of `regtool layers --format json` (README: JSON contract),
    which the web page's image endpoint serves as well."""
    return {
        "reference": report.reference,
        "repository": report.repository,
        "tag": report.tag,
        "tags": list(report.tags),
        "digest": report.digest,
        "manifest": report.manifest,
        "media_type": report.media_type,
        "platform": report.platform,
        "platforms": list(report.platforms),
        "config": report.config,
        "size": report.size,
        "layers": [
            {
                "digest": layer.digest,
                "size": layer.size,
                "media_type": layer.media_type,
                "diff_id": layer.diff_id,
                "created_by": layer.created_by,
                "shared_with": list(layer.shared_with),
            }
            for layer in report.layers
        ],
        "warnings": list(report.warnings),
    }
