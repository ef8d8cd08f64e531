"""Legacy v1 image jsons to an image config and manifest, the way the Docker engine does it.

Follows the engine's v1 import path (research v1-layout.md §6.3): the config is the top
image's json, round-tripped through the V1Image field set when `docker_version` < 1.8.3,
minus `id`, `parent`, `Size`, `parent_id`, `layer_id`, `throwaway`, plus `rootfs` (diff_ids
base first) and one `history` entry per v1 image. Every v1 image keeps its layer, so no
history entry is ever marked `empty_layer`. Pure functions over bytes; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from regtool.model.digest import digest_of
from regtool.model.mediatype import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)

FALLBACK_BELOW = "1.8.3"  # jsons of older engines go through the V1Image struct first
DROPPED = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")
# The engine's V1Image struct: every key, and the ones written only when not empty.
V1_IMAGE_FIELDS = (
    "id",
    "parent",
    "comment",
    "created",
    "container",
    "container_config",
    "docker_version",
    "author",
    "config",
    "architecture",
    "variant",
    "os",
    "Size",
)
_ALWAYS_WRITTEN = frozenset({"created", "container_config"})
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


class V1ConvertError(ValueError):
    """A v1 image json that cannot be converted."""


@dataclass(frozen=True, slots=True)
class Converted:
    """The image config written for a v1 chain, and its digest (the new image id)."""

    config: bytes
    digest: str
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]


def load_v1_json(raw: bytes) -> dict[str, Any]:
    """A v1 image json as an ordered dict; raises V1ConvertError for anything else."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise V1ConvertError("image json is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise V1ConvertError(f"image json is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise V1ConvertError("image json is not a JSON object")
    return doc


def version_less(version: str, than: str) -> bool:
    """Docker's `versions.LessThan`: dot-separated numbers, a non-number counts as 0."""

    def parts(text: str) -> list[int]:
        out = []
        for piece in text.split("."):
            out.append(int(piece) if piece.isdigit() else 0)
        return out

    left, right = parts(version), parts(than)
    size = max(len(left), len(right))
    left += [0] * (size - len(left))
    right += [0] * (size - len(right))
    return left < right


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False


def round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    """What unmarshalling into the engine's V1Image struct and back keeps: known keys only,
    empty `omitempty` fields dropped. A missing `created` stays missing (the engine would
    write Go's zero time; a config without `created` is valid and less surprising)."""
    kept: dict[str, Any] = {}
    for key in V1_IMAGE_FIELDS:
        if key not in doc:
            continue
        value = doc[key]
        if key in _ALWAYS_WRITTEN:
            if value is not None:
                kept[key] = value
        elif not _blank(value) and value != {}:
            kept[key] = value
    return kept


def created_by(doc: dict[str, Any]) -> str | None:
    container_config = doc.get("container_config")
    cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
    if isinstance(cmd, list):
        text = " ".join(str(part) for part in cmd)
        return text or None
    if isinstance(cmd, str) and cmd:
        return cmd
    return None


def history_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """The engine's `HistoryFromConfig(json, emptyLayer=false)`, empty fields left out."""
    entry: dict[str, Any] = {}
    for key, value in (
        ("created", doc.get("created")),
        ("author", doc.get("author")),
        ("created_by", created_by(doc)),
        ("comment", doc.get("comment")),
    ):
        if isinstance(value, str) and value:
            entry[key] = value
    return entry


def go_json(obj: Any) -> bytes:
    """Compact JSON with Go's HTML-safe escapes (what `json.Marshal` writes)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if any(ch in text for ch in _GO_ESCAPES):
        text = "".join(_GO_ESCAPES.get(ch, ch) for ch in text)
    return text.encode()


def config_from_v1(jsons: Sequence[bytes], diff_ids: Sequence[str]) -> Converted:
    """The image config of a v1 chain: `jsons` and `diff_ids` base first, one per image."""
    if not jsons:
        raise V1ConvertError("empty chain")
    if len(jsons) != len(diff_ids):
        raise V1ConvertError(f"{len(jsons)} image jsons but {len(diff_ids)} layers")
    docs = [load_v1_json(raw) for raw in jsons]
    history = tuple(history_entry(doc) for doc in docs)
    top = docs[-1]
    version = top.get("docker_version")
    if version_less(version if isinstance(version, str) else "", FALLBACK_BELOW):
        top = round_trip(top)
    fields = {key: value for key, value in top.items() if key not in DROPPED}
    fields["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    fields["history"] = list(history)
    # Go marshals a map with sorted keys; nested values keep their order (raw messages).
    config = go_json({key: fields[key] for key in sorted(fields)})
    return Converted(config, digest_of(config), tuple(diff_ids), history)


@dataclass(frozen=True, slots=True)
class BlobRef:
    digest: str
    size: int


def build_manifest(config: bytes, layers: Sequence[BlobRef], *, oci: bool = False) -> bytes:
    """A schema2 (or OCI) image manifest for a config and gzip layers, base first."""
    doc: dict[str, Any] = {"schemaVersion": 2}
    doc["mediaType"] = OCI_MANIFEST if oci else DOCKER_MANIFEST
    doc["config"] = {
        "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
        "size": len(config),
        "digest": digest_of(config),
    }
    layer_type = OCI_LAYER_GZIP if oci else DOCKER_LAYER
    doc["layers"] = [
        {"mediaType": layer_type, "size": layer.size, "digest": layer.digest} for layer in layers
    ]
    # distribution writes schema2 manifests indented with three spaces
    return json.dumps(doc, indent=3).encode()
