#!/usr/bin/env python3
"""Build ``tests/fixtures/v1``: a legacy docker-registry 0.x storage root, in pure Python.

The tree mimics what a Python registry (0.6 - 0.9) held after the pushes in the
seed blog post: ``library/busybox``, ``library/centos`` (``6.7`` and ``httpd``),
``gjkdhr/centos``, ``library/centos6`` and ``library/sshd``, all sharing one
five-image CentOS chain, plus one orphan image and one half-pushed image.
Layout and checksum formats follow ``research/v1-layout.md`` sections 1-3.

The output is byte-for-byte reproducible: ids come from ``random.Random(seed)``
and layer tars/gzip streams are built deterministically (see ``_fixturelib``).
``EXPECTED.json`` is generated from the same data and is the tests' ground truth.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from _fixturelib import (
    CHAINS,
    STEP_BY_KEY,
    Layer,
    build_layer,
    compact_json,
    created_str,
    py_json,
    simple_checksum,
    tarsum_v0,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "v1"
DEFAULT_SEED = 20151028

# (stored repository, tag, chain name, pushing docker version, last_update)
TAGS: tuple[tuple[str, str, str, str, int], ...] = (
    ("library/busybox", "latest", "busybox", "1.8.2", 1446000000),
    ("gjkdhr/centos", "httpd", "gjkdhr-centos-httpd", "1.10.3", 1446003600),
    ("library/centos", "6.7", "centos-6.7", "1.8.2", 1446007200),
    ("library/centos", "httpd", "centos-httpd", "1.8.2", 1446010800),
    ("library/centos6", "latest", "centos6", "1.8.2", 1446014400),
    ("library/sshd", "latest", "sshd", "1.8.2", 1446018000),
)
UNTAGGED_CHAINS = ("orphan", "in-progress")

PLAIN_CHECKSUM_STEP = "busybox-rootfs"  # 0.6-style plain string _checksum
TARSUM_STEP = "centos-rootfs"  # _checksum list also carries a tarsum v0
MINIMAL_JSON_STEP = "gjk-conf"  # pushed by Docker >= 1.10: {"id","parent"} only
IN_PROGRESS_STEP = "nginx-aborted"  # json + ancestry + _inprogress, no layer
DOCKER_110_STEPS = ("gjk-httpd", "gjk-conf", "gjk-site")


@dataclass
class V1Image:
    id: str
    step: str
    parent: str | None
    layer: Layer
    ancestry: list[str] = field(default_factory=list)
    json_bytes: bytes = b""


def allocate_images(seed: int) -> dict[str, V1Image]:
    """One image per distinct step, ids drawn in a fixed order; keyed by step key."""
    rng = random.Random(seed)
    images: dict[str, V1Image] = {}
    chains = [entry[2] for entry in TAGS] + list(UNTAGGED_CHAINS)
    for chain in chains:
        parent: V1Image | None = None
        for key in CHAINS[chain]:
            if key not in images:
                image_id = f"{rng.getrandbits(256):064x}"
                images[key] = V1Image(image_id, key, parent and parent.id, build_layer(key))
                images[key].ancestry = [image_id, *(parent.ancestry if parent else [])]
            parent = images[key]
    return images


def image_json(image: V1Image) -> bytes:
    """The client's image JSON in Docker 1.8 style (Go field order, compact)."""
    if image.step == MINIMAL_JSON_STEP:
        return compact_json({"id": image.id, "parent": image.parent})
    step = STEP_BY_KEY[image.step]
    doc: dict[str, object] = {"id": image.id}
    if image.parent:
        doc["parent"] = image.parent
    doc["created"] = created_str(step)
    shell_cmd = step.created_by.removeprefix("/bin/sh -c ")
    doc["container_config"] = {"Cmd": ["/bin/sh", "-c", shell_cmd]}
    doc["docker_version"] = "1.10.3" if image.step in DOCKER_110_STEPS else "1.8.2"
    doc["config"] = {"Cmd": list(step.cmd) if step.cmd else None}
    doc["architecture"] = step.arch
    doc["os"] = "linux"
    doc["Size"] = image.layer.file_bytes
    return compact_json(doc)


def checksum_file(image: V1Image) -> bytes:
    simple = simple_checksum(image.json_bytes, image.layer.gz)
    if image.step == PLAIN_CHECKSUM_STEP:
        return simple.encode()
    if image.step == TARSUM_STEP:
        return py_json([simple, tarsum_v0(image.json_bytes, image.layer.tar)])
    return py_json([simple])


def write_image(images_dir: Path, image: V1Image) -> None:
    folder = images_dir / image.id
    folder.mkdir(parents=True)
    (folder / "json").write_bytes(image.json_bytes)
    (folder / "ancestry").write_bytes(py_json(image.ancestry))
    if image.step == IN_PROGRESS_STEP:
        (folder / "_inprogress").write_bytes(b"true")
        return
    (folder / "layer").write_bytes(image.layer.gz)
    (folder / "_checksum").write_bytes(checksum_file(image))


def tag_json(docker_version: str, last_update: int) -> bytes:
    return py_json(
        {
            "last_update": last_update,
            "docker_version": docker_version,
            "arch": "amd64",
            "os": "linux",
            "kernel": "3.10.0",
        }
    )


def write_repositories(root: Path, images: dict[str, V1Image]) -> None:
    index: dict[str, list[str]] = {}
    for repo, tag, chain, version, last_update in TAGS:
        folder = root / "repositories" / repo
        folder.mkdir(parents=True, exist_ok=True)
        top = images[CHAINS[chain][-1]]
        (folder / f"tag_{tag}").write_bytes(top.id.encode())
        (folder / f"tag{tag}_json").write_bytes(tag_json(version, last_update))
        if tag == "latest":
            (folder / "json").write_bytes(tag_json(version, last_update))
        seen = index.setdefault(repo, [])
        seen.extend(i for i in top.ancestry if i not in seen)
    for repo, ids in index.items():
        entries = [{"id": image_id} for image_id in ids]
        (root / "repositories" / repo / "_index_images").write_bytes(py_json(entries))


def expected(images: dict[str, V1Image]) -> dict[str, object]:
    by_id = {image.id: image for image in images.values()}
    tags = []
    for repo, tag, chain, _, _ in TAGS:
        top = images[CHAINS[chain][-1]]
        size = sum(len(by_id[i].layer.gz) for i in top.ancestry)
        tags.append(
            {
                "repository": repo,
                "tag": tag,
                "image": top.id,
                "ancestry": top.ancestry,
                "layer_bytes": size,
            }
        )
    live = {i for entry in tags for i in entry["ancestry"]}
    return {
        "tags": tags,
        "orphans": [images[CHAINS["orphan"][-1]].id],
        "in_progress": [images[IN_PROGRESS_STEP].id],
        "images": sorted(by_id),
        "live_images": sorted(live),
        "special": {
            "plain_checksum": images[PLAIN_CHECKSUM_STEP].id,
            "tarsum_checksum": images[TARSUM_STEP].id,
            "minimal_json": images[MINIMAL_JSON_STEP].id,
            "empty_layer": images["busybox-cmd"].id,
        },
    }


def build(out: Path, seed: int) -> dict[str, object]:
    images = allocate_images(seed)
    for image in images.values():
        image.json_bytes = image_json(image)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for image in images.values():
        write_image(out / "images", image)
    write_repositories(out, images)
    result = expected(images)
    (out / "EXPECTED.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir (wiped)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    result = build(args.out, args.seed)
    print(f"wrote {args.out}: {len(result['images'])} images, {len(result['tags'])} tags")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
