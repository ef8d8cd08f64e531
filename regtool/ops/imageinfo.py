"""What an image's config says: platform, dates, what it runs, its history (the web page)."""

from __future__ import annotations

from dataclasses import dataclass

from regtool.layout.reader import Issue, RegistryReader
from regtool.layout.v2.reader import V2Reader


@dataclass(frozen=True, slots=True)
class HistoryRow:
    created: str | None
    created_by: str | None
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    digest: str
    created: str | None
    os: str | None
    architecture: str | None
    variant: str | None
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str | None
    user: str | None
    history: tuple[HistoryRow, ...]


def config_summary(reader: RegistryReader, digest: str | None) -> ConfigSummary | str | None:
    """The summary of the config blob `digest` (v2), the reason it cannot be read (str), or
    None where there is no config to read (a v1 image, an artifact without one)."""
    if digest is None or not isinstance(reader, V2Reader):
        return None
    config = reader.config(digest)
    if isinstance(config, Issue):
        return config.message
    return ConfigSummary(
        digest=digest,
        created=config.created,
        os=config.os,
        architecture=config.architecture,
        variant=config.variant,
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        env=config.env,
        working_dir=config.working_dir,
        user=config.user,
        history=tuple(
            HistoryRow(entry.created, entry.created_by, entry.empty_layer)
            for entry in config.history
        ),
    )
