"""What makes gc fast above the storage: a lean manifest scan and forked workers.

The reads themselves come from the driver's `scanner()` (storage/scan.py; the filesystem's
os-level fast paths live in storage/fs_scan.py). On a big local tree the full manifest
parser and a single process are most of gc's time: `quick_node` reads the common manifest
without it, and `run_parts` splits the work over forked processes where the driver allows.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from regtool.model import mediatype as mt
from regtool.model.jsondoc import JsonError, parse_json
from regtool.model.references import Node
from regtool.storage.scan import Scan

HEX = "0123456789abcdef"
SHA256_LENGTH = len("sha256:") + 64
PARALLEL_MIN_REPOSITORIES = 64
MAX_WORKERS = 4
T = TypeVar("T")
R = TypeVar("R")


def _digests(descriptors: object) -> list[tuple[str, int]] | None:
    """(digest, size) of well-formed sha256 descriptors; None for anything less common."""
    if not isinstance(descriptors, list):
        return None
    found = []
    for desc in descriptors:
        if type(desc) is not dict:
            return None
        digest, size = desc.get("digest"), desc.get("size")
        if type(digest) is not str or type(size) is not int or size < 0:
            return None
        if len(digest) != SHA256_LENGTH or digest[:7] != "sha256:" or digest[7:].strip(HEX):
            return None  # not a canonical sha256 digest: let the full parser say why
        found.append((digest, size))
    return found


def quick_node(raw: bytes) -> Node | None:
    """The common case (a schema2/OCI image manifest without subject) without the full parse.

    Accepts exactly what `parse_manifest` accepts for that case; None means "parse fully".
    """
    try:
        doc = parse_json(raw)
    except JsonError:
        return None
    if type(doc) is not dict or doc.get("schemaVersion") != 2 or "subject" in doc:
        return None
    media_type = doc.get("mediaType")
    if "manifests" in doc or not (
        media_type in mt.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc)
    ):
        return None
    blobs = _digests([doc.get("config")])
    layers = _digests(doc.get("layers"))
    if blobs is None or layers is None:
        return None
    artifact = doc.get("artifactType")
    if artifact is not None and not isinstance(artifact, str):
        return None
    pairs = (*blobs, *layers)
    return Node(tuple(d for d, _ in pairs), (), None, tuple(size for _, size in pairs))


def key(digest: str) -> bytes | str:
    """What the mark sets hold for `digest`: a canonical sha256 digest as its 32 bytes
    (about half the memory of the 71-character string), anything else as it is. Distinct
    digests always give distinct keys."""
    if len(digest) == SHA256_LENGTH and digest[:7] == "sha256:" and not digest[7:].strip(HEX):
        return bytes.fromhex(digest[7:])
    return digest


def hex_key(algorithm: str, hexpart: str) -> bytes | str:
    """`key(f"{algorithm}:{hexpart}")` for a name listed in a blob or link folder."""
    if algorithm == "sha256" and len(hexpart) == 64 and not hexpart.strip(HEX):
        return bytes.fromhex(hexpart)
    return f"{algorithm}:{hexpart}"


def worker_count(scan: Scan, repositories: int) -> int:
    """Two or more processes on a big local tree (gc is bound by system calls per file)."""
    if not scan.driver.forks or repositories < PARALLEL_MIN_REPOSITORIES:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def split(items: list[T], parts: int) -> list[list[T]]:
    return [items[i::parts] for i in range(parts)] if parts > 1 else [items]


_TASK: tuple[Callable[[Any], Any], list[Any]] | None = None


def _run_task(index: int) -> Any:
    assert _TASK is not None
    function, chunks = _TASK
    return function(chunks[index])


def run_parts(function: Callable[[list[T]], R], chunks: list[list[T]]) -> list[R]:
    """`function` over each chunk: the first here, the others in forked workers."""
    global _TASK
    if len(chunks) == 1:
        return [function(chunks[0])]
    _TASK = (function, chunks)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(chunks) - 1, mp_context=context) as pool:
            futures = [pool.submit(_run_task, i) for i in range(1, len(chunks))]
            first = function(chunks[0])
            return [first, *(future.result() for future in futures)]
    finally:
        _TASK = None
