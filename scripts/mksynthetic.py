#!/usr/bin/env python3
"""Write a synthetic CNCF distribution v2 storage tree straight to disk.

No registry process is involved: blobs, link files and directories are written
with plain ``open``/``write`` following the on-disk layout of distribution 2.8.2
(``<root>/docker/registry/v2/{blobs,repositories}``).

Shape (defaults): 2,000 repositories in 20 families, 10 tags each.  Every family
has 3 base layers shared by all of its repositories; every tag adds its own
config and 2 own layers and is a Docker schema2 manifest.  Afterwards a fraction
of the tags is "untagged by a manifest delete": the generator does on disk what
``DELETE /v2/<name>/manifests/<digest>`` does in 2.8.2 (revision link file
removed, leaving its empty directory; ``_layers`` link of the digest removed if
present; the whole ``_manifests/tags/<tag>/`` directory of every tag whose
``current/link`` names the digest removed; blob data and layer links stay).

The output is deterministic for a given seed and set of parameters.  With
``--report FILE`` a JSON document lists the deleted manifests and the blobs that
only they referenced, i.e. what ``registry garbage-collect`` should sweep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

BASE_LAYERS = 3
OWN_LAYERS = 2
BASE_PAYLOAD = (1024, 4096)
OWN_PAYLOAD = (256, 3072)
EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class Params:
    """What to generate."""

    repos: int = 2000
    tags: int = 10
    families: int = 20
    untagged_pct: float = 20.0
    seed: int = 1


SMALL = Params(repos=50, tags=4, families=5)


@dataclass
class DeletedManifest:
    """One manifest removed through the simulated manifest DELETE."""

    repo: str
    tag: str
    manifest: str
    config: str
    layers: list[str]


@dataclass
class Result:
    """Counts and the orphan list of one generation run."""

    params: Params
    root: str
    blobs: int = 0
    blob_bytes: int = 0
    files: int = 0
    bytes: int = 0
    repositories: int = 0
    manifests: int = 0
    tags_kept: int = 0
    deleted: list[DeletedManifest] = field(default_factory=list)
    orphaned_blobs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = asdict(self.params)
        return data


def gzip_stored(payload: bytes) -> bytes:
    """Wrap ``payload`` in a valid gzip member made of one stored deflate block.

    Independent of the zlib version, so the bytes (and digests) are stable.
    """
    n = len(payload)
    if n > 0xFFFF:
        raise ValueError("payload too large for a single stored block")
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, mtime 0, OS unknown
    block = struct.pack("<BHH", 1, n, n ^ 0xFFFF) + payload
    return header + block + struct.pack("<II", zlib.crc32(payload), n)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def repo_name(index: int, params: Params) -> str:
    family = index % params.families
    return f"fam{family:02d}/app{index:04d}"


def tag_name(index: int) -> str:
    return f"v1.{index}"


class Layer:
    __slots__ = ("blob", "digest", "diff_id", "created_by")

    def __init__(self, payload: bytes, created_by: str) -> None:
        self.blob = gzip_stored(payload)
        self.digest = sha256_digest(self.blob)
        self.diff_id = sha256_digest(payload)
        self.created_by = created_by


class TreeWriter:
    """Low-level writer; tracks file and byte counts and blob reference counts."""

    def __init__(self, root: str) -> None:
        self.v2 = os.path.join(root, "docker", "registry", "v2")
        self.blob_dir = os.path.join(self.v2, "blobs", "sha256")
        self.repo_root = os.path.join(self.v2, "repositories")
        self.files = 0
        self.bytes = 0
        self.blob_bytes = 0
        self.refcount: dict[str, int] = {}

    def prepare(self, force: bool) -> None:
        if os.path.exists(self.v2):
            if not force:
                raise SystemExit(f"{self.v2} already exists (use --force to replace it)")
            shutil.rmtree(self.v2)
        os.makedirs(self.blob_dir)
        os.makedirs(self.repo_root)
        for i in range(256):
            os.mkdir(os.path.join(self.blob_dir, f"{i:02x}"))

    def _write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as fh:
            fh.write(data)
        self.files += 1
        self.bytes += len(data)

    def put_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if digest in self.refcount:
            return digest
        hexd = digest[7:]
        d = os.path.join(self.blob_dir, hexd[:2], hexd)
        os.mkdir(d)
        self._write(os.path.join(d, "data"), data)
        self.blob_bytes += len(data)
        self.refcount[digest] = 0
        return digest

    def link(self, directory: str, digest: str) -> None:
        """Write ``<directory>/link`` holding exactly the digest (no newline)."""
        os.makedirs(directory, exist_ok=True)
        self._write(os.path.join(directory, "link"), digest.encode("ascii"))

    def remove_file(self, path: str) -> bool:
        try:
            size = os.stat(path).st_size
            os.remove(path)
        except FileNotFoundError:
            return False
        self.files -= 1
        self.bytes -= size
        return True

    def remove_tree(self, path: str) -> None:
        for dirpath, _dirs, names in os.walk(path):
            for name in names:
                self.files -= 1
                self.bytes -= os.stat(os.path.join(dirpath, name)).st_size
        shutil.rmtree(path)


class Repo:
    """Paths of one repository; mirrors the side effects of registry API calls."""

    def __init__(self, writer: TreeWriter, name: str) -> None:
        self.w = writer
        self.name = name
        self.dir = os.path.join(writer.repo_root, *name.split("/"))
        self.layers = os.path.join(self.dir, "_layers", "sha256")
        self.revisions = os.path.join(self.dir, "_manifests", "revisions", "sha256")
        self.tags = os.path.join(self.dir, "_manifests", "tags")
        for d in (self.layers, self.revisions, self.tags):
            os.makedirs(d)

    def link_blob(self, digest: str) -> None:
        """Side effect of a blob upload commit or cross-repo mount."""
        d = os.path.join(self.layers, digest[7:])
        if not os.path.exists(d):
            self.w.link(d, digest)

    def put_manifest(self, tag: str, body: bytes, refs: Sequence[str]) -> str:
        """Side effect of ``PUT /v2/<name>/manifests/<tag>``."""
        digest = self.w.put_blob(body)
        hexd = digest[7:]
        self.w.link(os.path.join(self.revisions, hexd), digest)
        tag_dir = os.path.join(self.tags, tag)
        self.w.link(os.path.join(tag_dir, "index", "sha256", hexd), digest)
        self.w.link(os.path.join(tag_dir, "current"), digest)
        rc = self.w.refcount
        rc[digest] += 1
        for ref in refs:
            rc[ref] += 1
        return digest

    def delete_manifest(self, digest: str, refs: Sequence[str]) -> list[str]:
        """Side effect of 2.8.2 ``DELETE /v2/<name>/manifests/<digest>``.

        Returns the tags that were removed.
        """
        hexd = digest[7:]
        if not self.w.remove_file(os.path.join(self.revisions, hexd, "link")):
            raise LookupError(f"{self.name}: manifest {digest} unknown")
        # linkedBlobStore.Clear walks every link path function: the revision
        # link and the (normally absent) _layers link of the same digest.
        self.w.remove_file(os.path.join(self.layers, hexd, "link"))
        removed: list[str] = []
        for entry in sorted(os.listdir(self.tags)):
            try:
                with open(os.path.join(self.tags, entry, "current", "link"), "rb") as fh:
                    current = fh.read().decode("ascii")
            except FileNotFoundError:
                continue
            if current == digest:
                removed.append(entry)
        for tag in removed:
            self.w.remove_tree(os.path.join(self.tags, tag))
        rc = self.w.refcount
        rc[digest] -= 1
        for ref in refs:
            rc[ref] -= 1
        return removed


def make_config(
    rng: random.Random, repo: str, tag: str, layers: Sequence[Layer], created: int
) -> bytes:
    history = []
    ts = created - 3600 * len(layers)
    for layer in layers:
        ts += rng.randint(60, 3600)
        history.append({"created": iso(ts), "created_by": layer.created_by})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": iso(created),
        "author": "mksynthetic",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": [f"/usr/local/bin/{repo.rsplit('/', 1)[-1]}"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": repo,
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.revision": rng.randbytes(20).hex(),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
    return json.dumps(config, separators=(",", ":")).encode()


def make_manifest(config: bytes, config_digest: str, layers: Sequence[Layer]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [
            {"mediaType": MT_LAYER, "size": len(layer.blob), "digest": layer.digest}
            for layer in layers
        ],
    }
    # Docker's clients send schema2 manifests indented with three spaces.
    return json.dumps(manifest, indent=3).encode()


def choose_deleted(params: Params) -> set[tuple[int, int]]:
    total = params.repos * params.tags
    count = round(total * params.untagged_pct / 100)
    rng = random.Random(params.seed * 1_000_003 + 7)
    picks = rng.sample(range(total), count)
    return {divmod(p, params.tags) for p in picks}


def generate(out: str, params: Params, force: bool = False) -> Result:
    """Write the tree under ``out`` and return counts plus the orphan list."""
    start = time.monotonic()
    for name in ("repos", "tags", "families"):
        if getattr(params, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if not 0 <= params.untagged_pct <= 100:
        raise ValueError("untagged_pct must be within 0..100")
    w = TreeWriter(out)
    w.prepare(force)
    rng = random.Random(params.seed)
    deleted_keys = choose_deleted(params)
    bases: dict[int, list[Layer]] = {}
    result = Result(params=params, root=os.path.abspath(out))

    for r in range(params.repos):
        name = repo_name(r, params)
        family = r % params.families
        if family not in bases:
            bases[family] = [
                Layer(
                    rng.randbytes(rng.randint(*BASE_PAYLOAD)),
                    f"/bin/sh -c #(nop) ADD base{family}-{i}",
                )
                for i in range(BASE_LAYERS)
            ]
            for layer in bases[family]:
                w.put_blob(layer.blob)
        repo = Repo(w, name)
        for layer in bases[family]:
            repo.link_blob(layer.digest)
        pending: list[DeletedManifest] = []
        for t in range(params.tags):
            tag = tag_name(t)
            own = [
                Layer(rng.randbytes(rng.randint(*OWN_PAYLOAD)), f"/bin/sh -c #(nop) COPY {tag}-{i}")
                for i in range(OWN_LAYERS)
            ]
            layers = bases[family] + own
            created = EPOCH + r * 86_400 + t * 3_600 + rng.randint(0, 3_599)
            config = make_config(rng, name, tag, layers, created)
            # Blob uploads come first (each commit writes a _layers link) ...
            for layer in own:
                w.put_blob(layer.blob)
                repo.link_blob(layer.digest)
            config_digest = w.put_blob(config)
            repo.link_blob(config_digest)
            # ... then the manifest PUT by tag.
            body = make_manifest(config, config_digest, layers)
            refs = [config_digest] + [layer.digest for layer in layers]
            digest = repo.put_manifest(tag, body, refs)
            result.manifests += 1
            if (r, t) in deleted_keys:
                pending.append(
                    DeletedManifest(name, tag, digest, config_digest, [x.digest for x in own])
                )
        for entry in pending:
            refs = [entry.config] + [x.digest for x in bases[family]] + entry.layers
            removed = repo.delete_manifest(entry.manifest, refs)
            if removed != [entry.tag]:
                raise AssertionError(f"{name}: delete removed tags {removed}, expected {entry.tag}")
            result.deleted.append(entry)
        result.repositories += 1

    result.tags_kept = result.manifests - len(result.deleted)
    result.orphaned_blobs = sorted(d for d, n in w.refcount.items() if n == 0)
    result.blobs = len(w.refcount)
    result.blob_bytes = w.blob_bytes
    result.files = w.files
    result.bytes = w.bytes
    result.seconds = round(time.monotonic() - start, 3)
    return result


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="storage root (rootdirectory)")
    p.add_argument(
        "--small", action="store_true", help="test preset: 50 repos x 4 tags, 5 families"
    )
    p.add_argument("--repos", type=int)
    p.add_argument("--tags", type=int)
    p.add_argument("--families", type=int)
    p.add_argument("--untagged-pct", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--report", help="write a JSON report (deleted manifests, orphaned blobs)")
    p.add_argument("--force", action="store_true", help="replace an existing docker/registry/v2")
    args = p.parse_args(argv)
    base = SMALL if args.small else Params()
    params = Params(
        repos=base.repos if args.repos is None else args.repos,
        tags=base.tags if args.tags is None else args.tags,
        families=base.families if args.families is None else args.families,
        untagged_pct=base.untagged_pct if args.untagged_pct is None else args.untagged_pct,
        seed=base.seed if args.seed is None else args.seed,
    )
    return args, params


def main(argv: Sequence[str] | None = None) -> int:
    args, params = parse_args(argv)
    try:
        result = generate(args.out, params, force=args.force)
    except ValueError as exc:
        print(f"mksynthetic: {exc}", file=sys.stderr)
        return 2
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(result.to_json(), fh, indent=1)
            fh.write("\n")
    print(
        f"repositories={result.repositories} manifests={result.manifests} "
        f"tags_kept={result.tags_kept} deleted_manifests={len(result.deleted)} "
        f"orphaned_blobs={len(result.orphaned_blobs)}"
    )
    print(
        f"blobs={result.blobs} blob_bytes={result.blob_bytes} "
        f"files={result.files} bytes={result.bytes} seconds={result.seconds}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
