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


@pytest.mark.parametrize(
    ("text", "repository", "tag", "host"),
    [
        ("127.0.0.1:5443/centos:httpd", "centos", "httpd", "127.0.0.1:5443"),
        ("registry.example.com/team/app:v1", "team/app", "v1", "registry.example.com"),
        ("localhost/app", "app", None, "localhost"),
        ("gjkdhr/centos:httpd", "gjkdhr/centos", "httpd", None),  # a namespace, not a host
    ],
)
def test_a_registry_host_in_front_is_set_aside(text, repository, tag, host):
    ref = parse_reference(text)
    assert (ref.repository, ref.tag, ref.host) == (repository, tag, host)


def test_a_short_digest_as_ls_prints_it_parses_for_expansion():
    ref = parse_reference("centos@ac8f23afd907")
    assert (ref.digest, ref.short_digest) == (None, "sha256:ac8f23afd907")
    with pytest.raises(ReferenceError_, match="at least 12 hex digits"):
        parse_reference("centos@ac8f23afd90")
