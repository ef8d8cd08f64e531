"""Find the storage root, tell its layout, and open a reader over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtool.errors import RootError, UsageError
from regtool.layout.reader import Layout, RegistryReader
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.storage.driver import StorageDriver

if TYPE_CHECKING:
    from regtool.storage.objectstore import S3Settings

DEFAULT_ROOT = Path("registry")
_V2_PARTS = tuple(v2paths.V2.split("/"))
# regtool's own files at the storage root (the undo journal's folder, the writers' lock):
# a root or bucket holding only these is empty
BOOKKEEPING = frozenset({".regtool", ".regtool.lock"})
# storage.* sections that configure the registry, not name its driver
NOT_DRIVERS = frozenset({"cache", "delete", "maintenance", "redirect", "tag"})


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """The parts of a distribution config.yml regtool uses: `root` for the filesystem
    driver, `s3` for the s3 driver (exactly one of them is set)."""

    path: Path
    root: Path | None
    blobdescriptor_cache: str | None
    delete_enabled: bool
    readonly: bool
    raw: dict[str, Any]
    s3: S3Settings | None = None


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
    drivers = [str(k) for k in storage if k not in NOT_DRIVERS]
    if len(drivers) > 1:
        raise UsageError(
            f"config {path} names {len(drivers)} storage drivers ({', '.join(drivers)}); "
            "a registry uses one"
        )
    root: Path | None = None
    s3 = None
    if "s3" in storage:
        from regtool.layout.s3yaml import parse_s3

        s3 = parse_s3(storage["s3"], str(path))
    elif isinstance(filesystem, dict):
        root = Path(str(filesystem.get("rootdirectory") or "/var/lib/registry"))
        if not root.is_absolute():
            root = path.parent / root
    else:
        raise UsageError(
            f"config {path} uses storage driver {', '.join(drivers) or '?'}; regtool reads the "
            "filesystem and s3 drivers only"
        )
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
        s3=s3,
    )


def choose_root(root: Path | None, config: Path | None) -> Path:
    """--root wins, then --config's rootdirectory, then ./registry (local storage only)."""
    if root is not None:
        return root
    if config is not None:
        loaded = load_config(config)
        if loaded.root is None:
            raise UsageError(
                f"config {config} keeps its storage in {loaded.s3.location() if loaded.s3 else '?'}"
                "; this command works on a local folder only"
            )
        return loaded.root
    return DEFAULT_ROOT


def choose_target(root: Path | None, config: Path | None) -> tuple[Path | None, Path | None]:
    """Where a writing command (import, migrate) writes: (local root, None) as
    choose_root picks it, or (None, config) when --config (without --root) names an S3
    bucket."""
    if root is None and config is not None and load_config(config).s3 is not None:
        return None, config
    return choose_root(root, config), None


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
    if (root / "docker").is_dir() or holds_nothing(root):
        return root, None
    raise RootError(
        f"{root} holds no registry storage (no docker/registry/v2, images/ or repositories/)",
        hint="point --root at distribution's rootdirectory or a v1 storage_path",
    )


def holds_nothing(root: Path) -> bool:
    """Whether a folder holds nothing but regtool's own BOOKKEEPING (or nothing at all)."""
    return all(entry.name in BOOKKEEPING for entry in root.iterdir())


def locate_keys(driver: StorageDriver) -> Layout | None:
    """The layout of a store without folders (an object store): v2 when keys start with
    docker/registry/v2/, v1 with images/ or repositories/, None when it holds nothing."""
    top = {entry.name for entry in driver.list("") if entry.is_dir}
    if "docker" in top and driver.list(v2paths.V2):
        return "v2"
    if v1paths.IMAGES in top or v1paths.REPOSITORIES in top:
        return "v1"
    if not top - {"docker"} - BOOKKEEPING:
        return None
    raise RootError(
        "the bucket holds no registry storage below its rootdirectory (no docker/registry/v2, "
        "images/ or repositories/)",
        hint="check storage.s3.rootdirectory",
    )


def open_reader(root: Path) -> RegistryReader:
    """A read-only reader over an existing root; refuses a missing or unknown one."""
    from regtool.layout.store import open_storage  # store builds on this module

    return open_storage(root).reader
