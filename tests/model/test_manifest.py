import json

import pytest

from regtool.model import mediatype as mt
from regtool.model.config import parse_config, parse_v1_json
from regtool.model.manifest import (
    ImageIndex,
    ImageManifest,
    ManifestError,
    Schema1Manifest,
    parse_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def desc(digest, size=10, media_type=mt.OCI_LAYER_GZIP, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def test_schema2_manifest_lists_config_then_layers():
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": desc(D1, 5, mt.DOCKER_CONFIG),
            "layers": [desc(D2, 7, mt.DOCKER_LAYER)],
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    assert [d.digest for d in manifest.references()] == [D1, D2]


def test_oci_artifact_keeps_subject_and_artifact_type():
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example+json",
            "config": desc(D1, 2, mt.OCI_EMPTY),
            "layers": [desc(D2)],
            "subject": desc(D1, 3, mt.OCI_MANIFEST),
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert manifest.artifact_type == "application/vnd.example+json"
    assert manifest.subject is not None and manifest.subject.digest == D1


def test_index_children_carry_platforms():
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                desc(D1, 1, mt.OCI_MANIFEST, platform={"os": "linux", "architecture": "amd64"}),
                desc(
                    D2,
                    1,
                    mt.OCI_MANIFEST,
                    platform={"os": "linux", "architecture": "arm64", "variant": "v8"},
                ),
            ],
        }
    ).encode()
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex)
    assert [str(d.platform) for d in index.manifests] == ["linux/amd64", "linux/arm64/v8"]


def test_schema1_is_read_with_layers_top_first():
    raw = json.dumps(
        {
            "schemaVersion": 1,
            "name": "x",
            "tag": "y",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": D2}, {"blobSum": D1}],
            "history": [{"v1Compatibility": "{}"}, {"v1Compatibility": "{}"}],
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, Schema1Manifest)
    assert manifest.fs_layers == (D2, D1)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 3}',
        b'{"schemaVersion": 2, "mediaType": "application/x-unknown"}',
        json.dumps(
            {"schemaVersion": 2, "config": {"digest": "sha256:12", "size": 1}, "layers": []}
        ).encode(),
        json.dumps(
            {"schemaVersion": 2, "config": {"digest": D1, "size": -1}, "layers": []}
        ).encode(),
    ],
)
def test_malformed_manifests_raise_manifest_error(raw):
    with pytest.raises(ManifestError):
        parse_manifest(raw)


def test_config_aligns_history_with_layers_skipping_empty_layers():
    config = parse_config(
        json.dumps(
            {
                "created": "2015-10-20T00:00:00Z",
                "os": "linux",
                "architecture": "arm64",
                "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
                "history": [
                    {"created_by": "ADD base"},
                    {"created_by": "ENV x=1", "empty_layer": True},
                    {"created_by": "RUN yum install httpd"},
                ],
            }
        ).encode()
    )
    assert config.platform == "linux/arm64"
    assert [h.created_by for h in config.layer_history()] == ["ADD base", "RUN yum install httpd"]


def test_v1_json_joins_cmd_and_tolerates_minimal_jsons():
    full = parse_v1_json(
        json.dumps(
            {
                "id": "a" * 64,
                "parent": "b" * 64,
                "created": "2015-01-01T00:00:00Z",
                "container_config": {"Cmd": ["/bin/sh", "-c", "yum -y install httpd"]},
            }
        ).encode()
    )
    assert full.created_by == "/bin/sh -c yum -y install httpd"
    minimal = parse_v1_json(json.dumps({"id": "a" * 64, "parent": "b" * 64}).encode())
    assert minimal.created is None and minimal.created_by is None
