"""`why REF|DIGEST`: what keeps an object alive, or that it is garbage.

"Garbage" is what `gc --delete-untagged --grace 0` would delete: a blob (v1: an image) in
that plan, or a manifest whose revision that plan drops; this module asks gc's planner
itself, so the two never disagree. What keeps an object is explained per tag, in every
repository: the shortest chain from the tag through index children and referrers (an
artifact whose `subject` is kept, e.g. a signature) to the object, over the same
`retained` reachability gc uses.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from regtool.errors import UnknownReferenceError, UsageError
from regtool.layout.reader import Issue, RegistryReader
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.model.digest import is_digest
from regtool.model.policy import Policies, TagTime, decide
from regtool.model.references import Node, node_of, retained
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.resolve import resolve_reference
from regtool.storage.driver import StorageError

MIN_PREFIX = 12
_HEX = frozenset("0123456789abcdef")


class NoSuchObject(UnknownReferenceError):
    """A digest or prefix that names nothing stored (the CLI exits 1)."""


@dataclass(frozen=True, slots=True)
class KeptBy:
    repository: str
    tag: str  # repo:tag
    via: tuple[str, ...]  # ("tag app:v8", "manifest sha256:...", "layer")


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    tag: str  # repo:tag
    verdict: str  # keep | remove | untouched
    rule: str | None  # the keeping rule, or why it is removed / untouched


@dataclass(frozen=True, slots=True)
class Why:
    object: str
    kind: str  # blob | manifest | image (v1)
    garbage: bool
    kept_by: tuple[KeptBy, ...]
    policy: PolicyVerdict | None = None
    problems: tuple[Issue, ...] = ()  # what gc could not read (its plan would be refused)


def explain(
    reader: RegistryReader,
    text: str,
    *,
    policies: Policies | None = None,
    now: float | None = None,
) -> Why:
    """Why `text` (a REF, a blob digest, or a hex prefix of at least 12) is kept."""
    now = time.time() if now is None else now
    digest = _as_digest(reader, text)
    plan = plan_gc(reader, GcOptions(grace=0, delete_untagged=True, now=now))
    doomed = {(entry.kind, entry.id) for entry in plan.delete}
    if reader.layout == "v1":
        if digest is None:
            digest = resolve_reference(reader, text).digest
        return Why(
            digest,
            "image",
            ("image", digest) in doomed,
            _v1_kept_by(reader, digest),
            None,
            plan.problems,
        )
    if digest is not None:
        kept_by = _v2_kept_by(reader, digest, blob=True)
        return Why(digest, "blob", ("blob", digest) in doomed, kept_by, None, plan.problems)
    target = resolve_reference(reader, text)
    verdict = None
    if policies is not None and target.tag is not None:
        verdict = _policy_verdict(reader, policies, target.repository, target.tag, now)
    name = f"{target.repository}@{target.digest}"
    return Why(
        name,
        "manifest",
        ("manifest", name) in doomed,
        _v2_kept_by(reader, target.digest, blob=False),
        verdict,
        plan.problems,
    )


# -- what the user named -----------------------------------------------------------------
def _as_digest(reader: RegistryReader, text: str) -> str | None:
    """The stored blob (v1: image) `text` names when it is a digest or a hex prefix;
    None when it is a REF. Ambiguous: UsageError listing candidates; none: NoSuchObject."""
    if reader.layout == "v1":
        hexpart = text
    elif text.startswith("sha256:") and is_digest(text):
        if not reader.driver.exists(v2paths.blob_data(text)):
            raise NoSuchObject(f"no blob {text} in this storage")
        return text
    else:
        hexpart = text.removeprefix("sha256:")
    if not (MIN_PREFIX <= len(hexpart) <= 64) or not set(hexpart) <= _HEX:
        if text.startswith("sha256:"):
            raise UsageError(
                f"{text} is not a digest: give sha256:<64 hex> or at least {MIN_PREFIX} hex "
                "characters"
            )
        return None
    found = _prefixed(reader, hexpart)
    if not found:
        raise NoSuchObject(f"no {'image' if reader.layout == 'v1' else 'blob'} {text} stored")
    if len(found) > 1:
        shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
        raise UsageError(
            f"{text} is ambiguous: {len(found)} objects start with it: {shown}",
            hint="give more hex characters",
        )
    return found[0]


def _prefixed(reader: RegistryReader, hexpart: str) -> list[str]:
    if reader.layout == "v1":
        folder, make = v1paths.IMAGES, (lambda name: name)
    else:
        folder, make = f"{v2paths.BLOBS}/sha256/{hexpart[:2]}", (lambda name: f"sha256:{name}")
    try:
        entries = reader.driver.list(folder)
    except StorageError:
        return []
    return sorted(make(e.name) for e in entries if e.is_dir and e.name.startswith(hexpart))


# -- v2 ------------------------------------------------------------------------------------
def _v2_kept_by(reader: RegistryReader, digest: str, *, blob: bool) -> tuple[KeptBy, ...]:
    nodes: dict[str, Node | None] = {}

    def load(manifest: str) -> Node | None:
        if manifest not in nodes:
            parsed = reader.manifest(manifest)  # type: ignore[attr-defined]
            nodes[manifest] = None if isinstance(parsed, Issue) else node_of(parsed)
        return nodes[manifest]

    found: list[KeptBy] = []
    for repository in reader.repositories():
        name = repository.name
        tags = [link for link in reader.tags(name) if link.digest is not None]
        if not tags:
            continue
        revisions = [d for _, d, _ in reader.revisions(name) if d is not None]  # type: ignore[attr-defined]
        reach = retained({link.digest for link in tags if link.digest}, revisions, load)
        referrers: dict[str, list[str]] = {}
        for revision in revisions:
            node = load(revision)
            if revision in reach and node is not None and node.subject is not None:
                referrers.setdefault(node.subject, []).append(revision)
        for link in tags:
            assert link.digest is not None
            via = _path(link.digest, digest, blob, load, referrers)
            if via is not None:
                label = f"{name}:{link.tag}"
                found.append(KeptBy(name, label, (f"tag {label}", *via)))
    return tuple(found)


def _path(
    start: str,
    target: str,
    blob: bool,
    load: Callable[[str], Node | None],
    referrers: dict[str, list[str]],
) -> tuple[str, ...] | None:
    """The shortest chain of hops from manifest `start` to `target` (a blob it, or a
    manifest it reaches, references), as `via` text; None when there is none."""
    parents: dict[str, tuple[str | None, str]] = {start: (None, "manifest")}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        node = load(current)
        end: str | None = None
        if current == target:
            end = ""
        elif blob and node is not None and target in node.blobs:
            is_config = node.blobs.index(target) == 0 and len(node.sizes) == len(node.blobs)
            end = "config" if is_config else "layer"
        if end is not None:
            hops: list[str] = []
            step: str | None = current
            while step is not None:
                parent, relation = parents[step]
                hop = load(step)
                kind = "index" if hop is not None and hop.children else relation
                hops.append(f"{kind} {step}")
                step = parent
            hops.reverse()
            return (*hops, end) if end else tuple(hops)
        nexts = [(child, "manifest") for child in (node.children if node else ())]
        nexts += [(ref, "referrer") for ref in referrers.get(current, ())]
        for following, relation in nexts:
            if following not in parents:
                parents[following] = (current, relation)
                queue.append(following)
    return None


def _policy_verdict(
    reader: RegistryReader, policies: Policies, repository: str, tag: str, now: float
) -> PolicyVerdict:
    label = f"{repository}:{tag}"
    policy = policies.governing(repository)
    if policy is None:
        return PolicyVerdict(label, "untouched", "no policy names this repository")
    links = [link for link in reader.tags(repository, pushed=True) if link.digest is not None]
    verdict = decide(policy, [TagTime(link.tag, link.pushed or 0.0) for link in links], now)
    rule = verdict.get(tag)
    if rule is None:
        return PolicyVerdict(label, "remove", f"policy {policy.number}: no keep rule keeps it")
    return PolicyVerdict(label, "keep", rule)


# -- v1 ------------------------------------------------------------------------------------
def _v1_kept_by(reader: RegistryReader, image: str) -> tuple[KeptBy, ...]:
    found = []
    for repository in reader.repositories():
        for link in reader.tags(repository.name):
            if link.digest is None:
                continue
            chain, _ = reader.chain(link.digest)  # type: ignore[attr-defined]
            if image in chain:
                label = f"{repository.name}:{link.tag}"
                hops = [f"image {i}" for i in chain[: chain.index(image) + 1]]
                found.append(KeptBy(repository.name, label, (f"tag {label}", *hops)))
    return tuple(found)
