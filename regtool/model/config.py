"""Image configs (v2) and legacy v1 image jsons: the parts regtool reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regtool.model.jsondoc import JsonError, parse_json

# Image configs and legacy v1 files (image json, ancestry, checksums) are read whole; real
# ones are a few KiB (a config with 120 history entries: ~60 KiB). Anything bigger is refused
# before it is read, as manifests are over distribution's 4 MiB.
MAX_CONFIG_BYTES = 8 * 1024 * 1024


class ConfigError(ValueError):
    """Bytes that are not an image config or v1 image json."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str | None
    created_by: str | None
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ImageConfig:
    created: str | None
    os: str | None
    architecture: str | None
    variant: str | None
    diff_ids: tuple[str, ...]
    raw_history: tuple[dict[str, Any], ...]
    # what a container of the image runs with (the config's `config` object); None: unset
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    user: str | None = None

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(_history(h) for h in self.raw_history)

    @property
    def platform(self) -> str | None:
        if not self.os or not self.architecture:
            return None
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def layer_history(self) -> tuple[HistoryEntry | None, ...]:
        """History entries aligned with layers: the non-empty ones, in order."""
        entries = tuple(h for h in self.history if not h.empty_layer)
        if len(entries) != len(self.diff_ids):
            return (None,) * len(self.diff_ids)
        return entries


def parse_config(raw: bytes) -> ImageConfig:
    doc = _object(raw)
    rootfs = doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    history = doc.get("history")
    run = doc.get("config")
    run = run if isinstance(run, dict) else {}
    return ImageConfig(
        created=_str(doc.get("created")),
        os=_str(doc.get("os")),
        architecture=_str(doc.get("architecture")),
        variant=_str(doc.get("variant")),
        diff_ids=tuple(str(d) for d in diff_ids) if isinstance(diff_ids, list) else (),
        raw_history=tuple(h for h in history if isinstance(h, dict))
        if isinstance(history, list)
        else (),
        entrypoint=_strings(run.get("Entrypoint")),
        cmd=_strings(run.get("Cmd")),
        env=_strings(run.get("Env")) or (),
        working_dir=_str(run.get("WorkingDir")),
        user=_str(run.get("User")),
    )


def _strings(value: Any) -> tuple[str, ...] | None:
    """A JSON list of strings (others dropped) as a tuple; anything else None."""
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, str))


def _history(doc: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        created=_str(doc.get("created")),
        created_by=_str(doc.get("created_by")),
        empty_layer=bool(doc.get("empty_layer", False)),
    )


@dataclass(frozen=True, slots=True)
class V1Image:
    """The fields of a legacy image json that regtool uses."""

    id: str
    parent: str | None
    created: str | None
    created_by: str | None
    os: str | None
    architecture: str | None


def parse_v1_json(raw: bytes) -> V1Image:
    doc = _object(raw)
    image_id = doc.get("id")
    if not isinstance(image_id, str):
        raise ConfigError("image json has no 'id'")
    container_config = doc.get("container_config")
    cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
    return V1Image(
        id=image_id,
        parent=_str(doc.get("parent")),
        created=_str(doc.get("created")),
        created_by=" ".join(str(c) for c in cmd) if isinstance(cmd, list) else None,
        os=_str(doc.get("os")),
        architecture=_str(doc.get("architecture")),
    )


def _object(raw: bytes) -> dict[str, Any]:
    try:
        doc = parse_json(raw, limit=MAX_CONFIG_BYTES)
    except JsonError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError("not a JSON object")
    return doc


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
