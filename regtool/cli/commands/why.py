"""`regtool why REF|DIGEST`: what keeps an object alive, or that it is garbage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from regtool.cli import output as out
from regtool.cli.errors import ExitCode, friendly_errors
from regtool.cli.options import ConfigOpt, FormatOpt, RootOpt, reader_for
from regtool.cli.output import Format
from regtool.ops.policy_file import load_policies
from regtool.ops.why import NoSuchObject, Why, explain


@friendly_errors
def why(
    ref: Annotated[
        str,
        typer.Argument(
            help="REPO[:TAG], REPO@DIGEST, a blob digest sha256:..., or at least 12 hex "
            "characters of one (v1: an image id)."
        ),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            "-p",
            help="A prune policy file: say which rule keeps or removes TAG.",
            show_default=False,
        ),
    ] = None,
    root: RootOpt = None,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Say what keeps an object alive, or that it is garbage.

    For a blob: every tag, in every repository, that reaches a manifest referencing it (as
    config, layer, or index child), with the chain of manifests on the way (index
    children, referrers such as signatures). For REF: the same for its manifest, and with
    --policy, the prune rule that keeps or removes the tag. GARBAGE means `gc
    --delete-untagged --grace 0` would delete it. A digest prefix naming several objects
    is refused (exit 2, listing them); one naming nothing exits 1.

    Example:

        regtool why centos:6.7 --root /var/lib/registry
        regtool why d7a0fa07b78f
    """
    policies = load_policies(policy) if policy is not None else None
    try:
        result = explain(reader_for(root, config), ref, policies=policies)
    except NoSuchObject as exc:
        sys.stderr.write(f"Error: {exc.message}\n")
        raise typer.Exit(int(ExitCode.PROBLEMS)) from None
    for issue in result.problems:
        out.warn(f"gc cannot read {issue}: it would refuse to sweep")
    out.emit(contract(result), fmt, lambda: _table(result))


def contract(result: Why) -> dict[str, object]:
    """{"object", "kind", "garbage", "kept_by": [{"repository", "tag", "via"}]} (and
    "policy": {"tag", "verdict", "rule"} with --policy for a tag)."""
    doc: dict[str, object] = {
        "object": result.object,
        "kind": result.kind,
        "garbage": result.garbage,
        "kept_by": [
            {"repository": k.repository, "tag": k.tag, "via": list(k.via)} for k in result.kept_by
        ],
    }
    if result.policy is not None:
        doc["policy"] = {
            "tag": result.policy.tag,
            "verdict": result.policy.verdict,
            "rule": result.policy.rule,
        }
    return doc


def _table(result: Why) -> str:
    state = "garbage: gc --delete-untagged would delete it" if result.garbage else "in use"
    lines = [f"{result.kind} {result.object}: {state}"]
    for kept in result.kept_by:
        lines.append("  " + " -> ".join(_short(hop) for hop in kept.via))
    if not result.kept_by:
        lines.append("  no tag reaches it")
    if result.policy is not None:
        rule = result.policy.rule or ""
        lines.append(f"policy: {result.policy.verdict} {result.policy.tag} ({rule})")
    return "\n".join(lines)


def _short(hop: str) -> str:
    kind, _, ident = hop.partition(" ")
    if ident.startswith("sha256:") or len(ident) == 64:
        return f"{kind} {out.short_id(ident)}"
    return hop
