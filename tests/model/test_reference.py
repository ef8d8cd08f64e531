import pytest

from regtool.model.reference import Reference, ReferenceError_, parse_reference

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("centos", Reference("centos")),
        ("centos:httpd", Reference("centos", tag="httpd")),
        ("gjkdhr/centos:httpd", Reference("gjkdhr/centos", tag="httpd")),
        (f"centos@{DIGEST}", Reference("centos", digest=DIGEST)),
        (f"centos:6.7@{DIGEST}", Reference("centos", tag="6.7", digest=DIGEST)),
    ],
)
def test_parse_reference_forms(text, expected):
    assert parse_reference(text) == expected


def test_target_defaults_to_latest():
    assert parse_reference("busybox").target == "latest"
    assert str(parse_reference("busybox")) == "busybox:latest"


@pytest.mark.parametrize("text", ["Centos", "a..b", "centos:-bad", "centos@sha256:xyz", "x" * 256])
def test_parse_reference_refuses_bad_names(text):
    with pytest.raises(ReferenceError_):
        parse_reference(text)
