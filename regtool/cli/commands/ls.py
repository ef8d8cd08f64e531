"""`regtool ls`: tags (or repositories) with exact sizes, shared versus exclusive."""

from __future__ import annotations

from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, reader_for
from regtool.cli.output import Format
from regtool.ops.inventory import short_name
from regtool.ops.ls import (
    RepositoryRow,
    TagRow,
    Totals,
    list_repositories_with_totals,
    list_tags_with_totals,
)
from regtool.ops.resolve import check_pattern


@friendly_errors
def ls(
    pattern: Annotated[
        str | None, typer.Argument(help="Glob over repository names, e.g. 'centos*'.")
    ] = None,
    repos: Annotated[bool, typer.Option("--repos", help="One row per repository.")] = False,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List every tag with its size and the part of it no other tag needs.

    SIZE counts the distinct blobs a tag needs (config and layers, every platform of an
    index); EXCLUSIVE is what removing only that tag would free once gc runs. The table ends
    with the totals: all listed tags' blobs counted once, the shared and exclusive parts. A
    PATTERN that matches no repository exits 1 (with up to 3 close names).

    Example:

        regtool ls --root /var/lib/registry 'centos*'
    """
    with progress.shown("ls"):
        reader = reader_for(root, config)
        pattern = check_pattern(reader, pattern)  # exit 1 when it matches no repository
        if repos:
            repo_rows, totals = list_repositories_with_totals(reader, pattern)
        else:
            rows, totals = list_tags_with_totals(reader, pattern)
    if repos:
        _warn(repo_rows)
        out.emit(repo_rows, fmt, lambda: _repo_table(repo_rows) + _totals(totals))
    else:
        _warn(rows)
        out.emit(rows, fmt, lambda: _tag_table(rows) + _totals(totals))
    for issue in reader.foreign_objects():
        out.warn(f"{issue}: not followed, nothing below it listed")


def _warn(rows: tuple[TagRow, ...] | tuple[RepositoryRow, ...]) -> None:
    for row in rows:
        for warning in row.warnings:
            out.warn(warning)


def _mark(row: TagRow | RepositoryRow) -> str:
    return "! " if row.warnings else ""


def _tag_table(rows: tuple[TagRow, ...]) -> str:
    body = [
        [
            _mark(row) + short_name(row.repository),
            row.tag,
            out.short_id(row.digest),
            ",".join(row.platforms) or "-",
            out.human_size(row.size),
            out.human_size(row.exclusive),
            out.short_time(row.created),
            row.layers,
        ]
        for row in sorted(rows, key=lambda r: (short_name(r.repository), r.tag))
    ]
    headers = ["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE", "EXCLUSIVE", "CREATED", "LAYERS"]
    return out.grid(body, headers)


def _repo_table(rows: tuple[RepositoryRow, ...]) -> str:
    body = [
        [
            _mark(row) + short_name(row.repository),
            row.tags,
            out.human_size(row.size),
            out.human_size(row.exclusive),
            out.human_size(row.shared),
        ]
        for row in sorted(rows, key=lambda r: short_name(r.repository))
    ]
    return out.grid(body, ["REPOSITORY", "TAGS", "SIZE", "EXCLUSIVE", "SHARED"])


def _totals(totals: Totals) -> str:
    return (
        f"\ntotal {out.human_size(totals.size)} in {totals.blobs} blobs: "
        f"{out.human_size(totals.shared)} shared, {out.human_size(totals.exclusive)} exclusive"
    )
