"""What a manifest references, and which manifests are kept from a set of roots: the one
definition gc, rm and anything else that asks "is this still needed?" use.

Pure: manifests come in through a `load` function; nothing here reads storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from regtool.model import mediatype as mt
from regtool.model.manifest import Descriptor, ImageIndex, Manifest, Schema1Manifest


@dataclass(frozen=True, slots=True)
class Node:
    """What a stored manifest references: blobs (config and layers), child manifests (an
    index's), and the manifest it is an artifact of (`subject`). `sizes` are the blobs'
    descriptor sizes, in the same order (empty when the manifest has none: schema1)."""

    blobs: tuple[str, ...]
    children: tuple[str, ...]
    subject: str | None
    sizes: tuple[int, ...] = field(default=(), compare=False)  # descriptive only


def node_of(manifest: Manifest) -> Node:
    """The references of a parsed manifest of any kind, as `Manifest.references()` lists
    them (the one definition of what a manifest references): an index's are manifests,
    anything else's are blobs."""
    subject = manifest.subject.digest if manifest.subject is not None else None
    digests = tuple(d.digest for d in manifest.references())
    if isinstance(manifest, ImageIndex):
        return Node((), digests, subject)
    if isinstance(manifest, Schema1Manifest):  # no config, and no sizes declared
        return Node(digests, (), None)
    return Node(digests, (), subject, tuple(d.size for d in manifest.references()))


def may_be_absent(descriptor: Descriptor) -> bool:
    """A foreign (non-distributable) layer with URLs: clients fetch it there, so the
    storage need not hold it. Every other reference must be stored."""
    return bool(descriptor.urls) and mt.is_foreign_layer(descriptor.media_type)


Load = Callable[[str], Node | None]  # digest -> its node, None when it cannot be read


def reachable(roots: Iterable[str], load: Load) -> set[str]:
    """Manifests reachable from `roots` through index children, to any depth (roots too)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        node = load(digest)
        if node is not None:
            stack.extend(node.children)
    return seen


def retained(roots: Iterable[str], candidates: Iterable[str], load: Load) -> set[str]:
    """Manifests kept when `roots` are: what they reach, and, until nothing changes, every
    candidate that cannot be read (it might need anything) or whose subject is kept (an
    artifact of a kept image: a signature, an SBOM), with what that reaches."""
    keep = set(roots)
    others = list(candidates)
    while True:
        reach = reachable(keep, load)
        grown = False
        for digest in others:
            if digest in reach:
                continue
            node = load(digest)
            if node is None or (node.subject is not None and node.subject in reach):
                keep.add(digest)
                grown = True
        if not grown:
            return reach
