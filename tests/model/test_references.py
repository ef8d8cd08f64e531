"""The one definition of what a manifest references and what stays reachable."""

from __future__ import annotations

import json

from regtool.model.manifest import parse_manifest
from regtool.model.references import Node, may_be_absent, node_of, reachable, retained

D = {name: "sha256:" + name * 64 for name in "abcdefgh"}


def graph(nodes: dict[str, Node | None]):
    return lambda digest: nodes.get(digest)


def desc(media_type: str, digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def test_node_of_each_manifest_kind() -> None:
    image = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", D["a"], 2),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", D["b"], 3)],
        "subject": desc("application/vnd.oci.image.manifest.v1+json", D["c"], 4),
    }
    assert node_of(parse_manifest(json.dumps(image).encode())) == Node((D["a"], D["b"]), (), D["c"])
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc("application/vnd.oci.image.manifest.v1+json", D["d"], 5)],
    }
    assert node_of(parse_manifest(json.dumps(index).encode())) == Node((), (D["d"],), None)


def test_reachable_follows_indexes_to_any_depth_and_survives_cycles() -> None:
    nodes = {
        D["a"]: Node((), (D["b"],), None),
        D["b"]: Node((), (D["c"], D["a"]), None),  # a cycle back to the top
        D["c"]: Node((), (D["d"],), None),
        D["d"]: Node((D["h"],), (), None),
    }
    assert reachable([D["a"]], graph(nodes)) == {D["a"], D["b"], D["c"], D["d"]}


def test_retained_keeps_artifacts_of_kept_images_transitively_and_unreadable_ones() -> None:
    nodes: dict[str, Node | None] = {
        D["a"]: Node((D["h"],), (), None),  # the tagged image
        D["b"]: Node((), (), D["a"]),  # its signature
        D["c"]: Node((), (), D["b"]),  # a signature of the signature
        D["e"]: Node((), (), D["g"]),  # an artifact of something dropped
        D["f"]: None,  # unreadable: it might need anything
    }
    kept = retained([D["a"]], [D["b"], D["c"], D["e"], D["f"]], graph(nodes))
    assert kept == {D["a"], D["b"], D["c"], D["f"]}


def test_only_a_foreign_layer_with_urls_may_be_absent_from_the_storage() -> None:
    url = {"urls": ["https://example.com/layer"]}
    foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    image = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": desc("application/vnd.docker.container.image.v1+json", D["a"], 2) | url,
        "layers": [
            desc(foreign, D["b"], 3) | url,
            desc(foreign, D["c"], 3),
            desc("application/vnd.docker.image.rootfs.diff.tar.gzip", D["d"], 3) | url,
        ],
    }
    manifest = parse_manifest(json.dumps(image).encode())
    absent = [d.digest for d in manifest.references() if may_be_absent(d)]
    assert absent == [D["b"]]
    assert node_of(manifest).blobs == (D["a"], D["b"], D["c"], D["d"])  # still referenced
