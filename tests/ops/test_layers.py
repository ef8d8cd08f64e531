"""`layers REF`: base-first layers and the other tags that share each one, on both layouts."""

from __future__ import annotations

import pytest

from regtool.errors import BadReferenceError, UnknownReferenceError, UsageError
from regtool.layout.detect import open_reader
from regtool.ops.layers import image_layers

BASE_SHARERS = {"centos:6.7", "centos6:latest", "sshd:latest"}


def _short(label: str) -> str:
    return label.removeprefix("library/")


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_centos_httpd_base_layers_are_shared_with_centos_67_centos6_and_sshd(
    layout, v1_root, v2_root
):
    root = v1_root if layout == "v1" else v2_root
    report = image_layers(open_reader(root), "centos:httpd")
    assert len(report.layers) == 7
    for layer in report.layers[:5]:
        sharers = {_short(label) for label in layer.shared_with}
        assert BASE_SHARERS <= sharers, layer.digest
        assert "centos:httpd" not in sharers
    for layer in report.layers[5:]:
        assert layer.shared_with == ()


def test_v1_layers_are_image_ids_base_first_with_created_by(v1_root, v1_expected):
    tag = next(
        t
        for t in v1_expected["tags"]
        if t["repository"] == "library/centos" and t["tag"] == "httpd"
    )
    report = image_layers(open_reader(v1_root), "centos:httpd")
    assert [layer.digest for layer in report.layers] == list(reversed(tag["ancestry"]))
    assert report.digest == tag["image"]
    assert report.platform is None and report.platforms == ()
    assert report.repository == "library/centos"
    assert all(layer.created_by for layer in report.layers)


def test_v2_layers_carry_diff_ids_and_sizes_from_the_manifest(v2_root, v2_expected):
    expected = v2_expected["manifests"]["centos:httpd"]
    report = image_layers(open_reader(v2_root), "centos:httpd")
    assert report.digest == expected["digest"]
    assert [layer.digest for layer in report.layers] == expected["layers"]
    assert all(layer.diff_id and layer.diff_id.startswith("sha256:") for layer in report.layers)
    assert report.config == expected["config"]


def test_index_defaults_to_linux_amd64_and_platform_picks_another(v2_root, v2_expected):
    reader = open_reader(v2_root)
    default = image_layers(reader, "multi")
    assert default.platform == "linux/amd64"
    assert set(default.platforms) == {"linux/amd64", "linux/arm64/v8"}
    arm = image_layers(reader, "multi:latest", platform="linux/arm64/v8")
    assert arm.platform == "linux/arm64/v8"
    assert arm.manifest != default.manifest
    assert arm.digest == default.digest == v2_expected["manifests"]["multi:latest"]["digest"]
    with pytest.raises(UsageError, match="no platform windows/amd64") as caught:
        image_layers(reader, "multi", platform="windows/amd64")
    assert caught.value.hint == "available: linux/amd64, linux/arm64/v8"


def test_reference_by_digest_shares_with_other_images_not_its_own_tags(v2_root, v2_expected):
    digest = v2_expected["manifests"]["centos:6.7"]["digest"]
    report = image_layers(open_reader(v2_root), f"centos@{digest}")
    assert report.tag is None
    assert report.tags == ("6.7",)
    assert "centos:6.7" not in report.layers[0].shared_with
    assert "centos:httpd" in report.layers[0].shared_with
    by_tag = image_layers(open_reader(v2_root), "centos:6.7")
    assert [row.shared_with for row in by_tag.layers] == [row.shared_with for row in report.layers]


def test_unknown_reference_lists_close_matches(v1_root):
    with pytest.raises(UnknownReferenceError) as caught:
        image_layers(open_reader(v1_root), "centos:htpd")
    assert "centos:httpd" in (caught.value.hint or "")
    with pytest.raises(UnknownReferenceError) as caught:
        image_layers(open_reader(v1_root), "cent0s")
    assert "centos" in (caught.value.hint or "")


def test_bad_reference_is_a_usage_error(v2_root):
    with pytest.raises(BadReferenceError):
        image_layers(open_reader(v2_root), "Centos:httpd")
