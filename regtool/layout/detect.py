"""Find the storage root, tell its layout, and open a reader over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import RootError, UsageError
from regtool.layout.reader import Layout, RegistryReader
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths

DEFAULT_ROOT = Path("registry")
_V2_PARTS = tuple(v2paths.V2.split("/"))


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """The parts of a distribution config.yml regtool uses."""

    path: Path
    root: Path
    blobdescriptor_cache: str | None
    delete_enabled: bool
    readonly: bool
    raw: dict[str, Any]


def load_config(path: Path) -> RegistryConfig:
    """Read distribution's config.yml (storage.filesystem.rootdirectory and friends)."""
    import yaml  # only needed with --config; keeps every command's start-up short

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RootError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config {path} is not valid YAML: {exc}".splitlines()[0]) from None
    storage = doc.get("storage") if isinstance(doc, dict) else None
    if not isinstance(storage, dict):
        raise UsageError(f"config {path} has no 'storage' section")
    filesystem = storage.get("filesystem")
    if not isinstance(filesystem, dict):
        drivers = ", ".join(k for k in storage if k not in ("cache", "delete", "maintenance"))
        raise UsageError(
            f"config {path} uses storage driver {drivers or '?'}; regtool reads the filesystem "
            "driver only"
        )
    rootdir = filesystem.get("rootdirectory") or "/var/lib/registry"
    root = Path(str(rootdir))
    if not root.is_absolute():
        root = path.parent / root
    cache = storage.get("cache")
    maintenance = storage.get("maintenance") or {}
    readonly = maintenance.get("readonly") if isinstance(maintenance, dict) else None
    delete = storage.get("delete")
    return RegistryConfig(
        path=path,
        root=root,
        blobdescriptor_cache=cache.get("blobdescriptor") if isinstance(cache, dict) else None,
        delete_enabled=bool(delete.get("enabled")) if isinstance(delete, dict) else False,
        readonly=bool(readonly.get("enabled")) if isinstance(readonly, dict) else False,
        raw=doc,
    )


def choose_root(root: Path | None, config: Path | None) -> Path:
    """--root wins, then --config's rootdirectory, then ./registry."""
    if root is not None:
        return root
    if config is not None:
        return load_config(config).root
    return DEFAULT_ROOT


def locate(root: Path) -> tuple[Path, Layout | None]:
    """The storage root (the folder holding docker/ or images/) and its layout.

    Accepts the storage root itself or distribution's `docker/registry/v2` folder.
    Returns layout None for an empty folder.
    """
    if tuple(root.resolve().parts[-3:]) == _V2_PARTS:
        return root.resolve().parents[2], "v2"
    if (root / v2paths.V2).is_dir():
        return root, "v2"
    if (root / v1paths.IMAGES).is_dir() or (root / v1paths.REPOSITORIES).is_dir():
        return root, "v1"
    if (root / "docker").is_dir() or not any(root.iterdir()):
        return root, None
    raise RootError(
        f"{root} holds no registry storage (no docker/registry/v2, images/ or repositories/)",
        hint="point --root at distribution's rootdirectory or a v1 storage_path",
    )


def open_reader(root: Path) -> RegistryReader:
    """A read-only reader over an existing root; refuses a missing or unknown one."""
    from regtool.layout.store import open_storage  # store builds on this module

    return open_storage(root).reader
