"""v1 jsons to an image config and manifest, as the engine's v1 conversion does (§6.3)."""

from __future__ import annotations

import json

import pytest

from regtool.model.v1convert import (
    BlobRef,
    V1ConvertError,
    build_manifest,
    config_from_v1,
    version_less,
)

BASE = {
    "id": "a" * 64,
    "created": "2015-01-01T00:00:00Z",
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file:x in /"], "Hostname": ""},
    "docker_version": "1.9.1",
    "author": "someone",
    "architecture": "amd64",
    "os": "linux",
    "Size": 123,
}
TOP = {
    "id": "b" * 64,
    "parent": "a" * 64,
    "created": "2015-01-02T00:00:00Z",
    "container_config": {"Cmd": ["/bin/sh", "-c", "echo a > b && c"]},
    "config": {"Cmd": ["httpd"], "Env": ["A=1"]},
    "docker_version": "1.9.1",
    "architecture": "amd64",
    "os": "linux",
    "Size": 5,
    "parent_id": "sha256:" + "c" * 64,
    "layer_id": "sha256:" + "d" * 64,
    "throwaway": True,
    "comment": "made by hand",
}
DIFF_IDS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]


def raw(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_config_drops_the_v1_only_fields_and_adds_rootfs_and_history():
    converted = config_from_v1([raw(BASE), raw(TOP)], DIFF_IDS)
    config = json.loads(converted.config)
    for dropped in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway"):
        assert dropped not in config
    assert config["rootfs"] == {"type": "layers", "diff_ids": DIFF_IDS}
    assert config["config"] == {"Cmd": ["httpd"], "Env": ["A=1"]}
    assert converted.digest.startswith("sha256:")


def test_one_history_entry_per_image_and_never_empty_layer():
    config = json.loads(config_from_v1([raw(BASE), raw(TOP)], DIFF_IDS).config)
    assert config["history"] == [
        {
            "created": "2015-01-01T00:00:00Z",
            "author": "someone",
            "created_by": "/bin/sh -c #(nop) ADD file:x in /",
        },
        {
            "created": "2015-01-02T00:00:00Z",
            "created_by": "/bin/sh -c echo a > b && c",
            "comment": "made by hand",
        },
    ]


def test_config_is_compact_sorted_go_json():
    text = config_from_v1([raw(BASE), raw(TOP)], DIFF_IDS).config.decode()
    assert " " not in text.replace("/bin/sh -c", "").replace("echo a", "").split('"history"')[0][:5]
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    assert "\\u003e" in text and "\\u0026" in text  # Go escapes <, > and & in strings


def test_old_engine_jsons_round_trip_through_the_v1_image_fields():
    old = {**TOP, "docker_version": "1.8.2", "unknown_key": 1, "author": "", "os": ""}
    config = json.loads(config_from_v1([raw(BASE), raw(old)], DIFF_IDS).config)
    assert "unknown_key" not in config and "author" not in config and "os" not in config
    new = {**TOP, "docker_version": "1.8.3", "unknown_key": 1}
    assert json.loads(config_from_v1([raw(BASE), raw(new)], DIFF_IDS).config)["unknown_key"] == 1


def test_minimal_jsons_without_created_convert():
    minimal = [raw({"id": "a" * 64}), raw({"id": "b" * 64, "parent": "a" * 64})]
    config = json.loads(config_from_v1(minimal, DIFF_IDS).config)
    assert config == {"history": [{}, {}], "rootfs": {"type": "layers", "diff_ids": DIFF_IDS}}


def test_the_same_chain_always_gives_the_same_config_digest():
    first = config_from_v1([raw(BASE), raw(TOP)], DIFF_IDS)
    assert config_from_v1([raw(BASE), raw(TOP)], DIFF_IDS).digest == first.digest


@pytest.mark.parametrize(
    ("jsons", "diff_ids"),
    [([], []), ([b"[1]"], DIFF_IDS[:1]), ([b"{nope"], DIFF_IDS[:1]), ([raw(BASE)], DIFF_IDS)],
)
def test_bad_input_raises_v1_convert_error(jsons, diff_ids):
    with pytest.raises(V1ConvertError):
        config_from_v1(jsons, diff_ids)


@pytest.mark.parametrize(
    ("left", "right", "less"),
    [
        ("1.8.2", "1.8.3", True),
        ("1.8.3", "1.8.3", False),
        ("1.10.0", "1.8.3", False),
        ("", "1.8.3", True),
        ("0.9.1-dev", "1.8.3", True),
        ("1.8", "1.8.3", True),
    ],
)
def test_version_less_compares_like_docker(left, right, less):
    assert version_less(left, right) is less


def test_schema2_and_oci_manifests_list_layers_base_first():
    config = b'{"a":1}'
    layers = [BlobRef("sha256:" + "1" * 64, 10), BlobRef("sha256:" + "2" * 64, 20)]
    docker = json.loads(build_manifest(config, layers))
    assert docker["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert docker["config"]["size"] == len(config)
    assert [layer["digest"] for layer in docker["layers"]] == [layer.digest for layer in layers]
    oci = json.loads(build_manifest(config, layers, oci=True))
    assert oci["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
