"""`regtool migrate --from V1ROOT --to V2ROOT`: convert a legacy v1 tree into the v2 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli import progress
from regtool.cli.confirm import confirm
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import FormatOpt
from regtool.cli.output import Format
from regtool.layout.detect import choose_target
from regtool.ops.migrate import MigrationPlan, MigrationResult, apply_migration, plan_migration

_DESTINATION = "Destination when --to is not given"


@friendly_errors
def migrate(
    source: Annotated[
        Path,
        typer.Option(
            "--from",
            help="The v1 storage_path to read (holds images/, repositories/).",
        ),
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="The v2 rootdirectory to write (created when missing); without it, the "
            "destination is --root or --config's storage (below).",
            show_default=False,
        ),
    ] = None,
    oci: Annotated[bool, typer.Option("--oci", help="Write OCI manifests, not schema2.")] = False,
    keep_library: Annotated[
        bool, typer.Option("--keep-library", help="Keep 'library/NAME' (default: 'NAME').")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and write nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    no_overwrite: Annotated[
        bool,
        typer.Option(
            "--no-overwrite",
            help="Leave a tag that names another image as it is (exit 1, naming it).",
        ),
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            envvar="REGTOOL_ROOT",
            help="The v2 root to write when --to is not given (distribution's "
            "rootdirectory). Default ./registry.",
            show_default=False,
            rich_help_panel=_DESTINATION,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A distribution config.yml: without --to (and --root), write into its "
            "storage, a folder or an S3 bucket (needs regtool[s3]).",
            show_default=False,
            rich_help_panel=_DESTINATION,
        ),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Convert every tagged v1 image chain into a v2 image, as the Docker engine would.

    Layers keep their stored gzip bytes (xz and plain tars are recompressed); the config
    comes from the top image's json plus rootfs and one history entry per v1 image.
    'library/NAME' becomes 'NAME' so `docker pull HOST/NAME` keeps working. The source is
    never modified; re-running skips what is already there. --to defaults to --root, then
    to --config's storage: a config with storage.s3 migrates into that bucket.
    Exit 1 when a chain had to be skipped (missing parent or layer, corrupt layer, a
    parent that is no image id, a symlink or non-file where a v1 file should be: symlinks
    in the v1 tree are never followed). Exit 3 when the destination fills up: no tag is
    written then, and a re-run after freeing space finishes. A destination tag that names
    another image is moved and reported `replaced` with the digest it had (the plan shows
    the tags that exist); --no-overwrite leaves it (`kept`), writes the rest and exits 1.
    A layer the destination already holds (same uncompressed content) is reused.

    Example:

        regtool migrate --from /srv/registry-v1 --to /var/lib/registry --dry-run
    """
    with progress.shown("migrate", "reading"):
        destination, bucket = (to, None) if to is not None else choose_target(root, config)
        plan = plan_migration(
            source, destination, config=bucket, oci=oci, keep_library=keep_library
        )
    if dry_run or not yes:
        out.emit(plan, fmt, lambda: _plan_table(plan, no_overwrite))
    if not plan.ready:
        if not dry_run:
            out.note("nothing to migrate")
        raise typer.Exit(int(ExitCode.PROBLEMS) if plan.skipped else 0)
    question = f"Write {len(plan.ready)} tags into {plan.destination}?"
    if not confirm(question, dry_run=dry_run, yes=yes):
        raise typer.Exit(int(ExitCode.PROBLEMS) if plan.skipped else 0)
    with progress.shown("migrate") as live:
        if live is not None:
            live.phase("copying layers", plan.layer_bytes)
        advance = live.data if live is not None else None
        result = apply_migration(plan, progress=advance, overwrite=not no_overwrite)
    for skipped in result.skipped:
        out.warn(f"skipped {skipped.source}: {skipped.problem}")
    out.emit(result, fmt, lambda: _result_table(result))
    if result.kept:
        names = ", ".join(f"{tag.repository}:{tag.tag}" for tag in result.kept)
        out.warn(f"--no-overwrite kept {len(result.kept)} tag(s) naming another image: {names}")
    if result.skipped or result.kept:
        raise typer.Exit(int(ExitCode.PROBLEMS))


def _plan_table(plan: MigrationPlan, no_overwrite: bool = False) -> str:
    rows = []
    for chain in plan.chains:
        note = chain.problem and f"SKIPPED: {chain.problem}"
        if not note:
            notes = []
            if chain.existing is not None:
                now = out.short_id(chain.existing)
                notes.append(
                    f"tag exists ({now}): kept"
                    if no_overwrite
                    else f"tag exists ({now}): replaced if it differs"
                )
            if chain.recompress:
                notes.append(f"{len(chain.recompress)} layer(s) recompressed to gzip")
            note = "; ".join(notes)
        rows.append(
            [
                chain.source,
                f"{chain.repository}:{chain.tag}",
                len(chain.images),
                out.human_size(chain.layer_bytes) if chain.problem is None else "-",
                note or "",
            ]
        )
    table = out.grid(rows, ["SOURCE", "DESTINATION", "IMAGES", "LAYERS", "NOTE"])
    kind = "OCI" if plan.oci else "schema2"
    total = (
        f"Plan ({kind}): {len(plan.ready)} tags in {len(plan.repositories)} repositories, "
        f"{plan.images} v1 images, {out.human_size(plan.layer_bytes)} of layers"
    )
    if plan.recompress:
        total += f", {len(plan.recompress)} recompressed to gzip"
    if plan.skipped:
        total += f"; {len(plan.skipped)} skipped"
    existing = sum(1 for c in plan.ready if c.existing is not None)
    if existing:
        total += f"; {existing} tag(s) exist " + ("(kept)" if no_overwrite else "(replaced)")
    return f"{table}\n{total}"


def _result_table(result: MigrationResult) -> str:
    rows = [
        [
            result.repositories,
            result.tags,
            f"{result.blobs_written} new, {result.blobs_present} present",
            out.human_size(result.bytes_written),
            f"{result.seconds:.1f}",
        ]
    ]
    table = out.grid(rows, ["REPOSITORIES", "TAGS", "BLOBS", "BYTES", "SECONDS"])
    lines = [table]
    if result.layers_reused:
        lines.append(f"{result.layers_reused} layer(s) already stored (same content), reused")
    for tag in result.migrated:
        if tag.previous is not None:
            lines.append(
                f"{tag.status} {tag.repository}:{tag.tag} (was {out.short_id(tag.previous)}, "
                f"now {out.short_id(tag.manifest)})"
                if tag.status == "replaced"
                else f"kept {tag.repository}:{tag.tag} at {out.short_id(tag.previous)} "
                f"(not moved to {out.short_id(tag.manifest)})"
            )
    return "\n".join(lines)
