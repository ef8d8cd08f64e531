import pytest

from regtool.model.digest import DigestError, digest_of, is_v1_id, parse_digest, short

HEX = "a" * 64


def test_parse_digest_accepts_canonical_sha256():
    assert parse_digest(f"sha256:{HEX}") == f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"sha256:{HEX}\n", "white space"),
        ("", "empty"),
        (f"sha256:{'A' * 64}", "upper-case"),
        ("sha256:abc", "length"),
        (f"md5:{HEX}", "format"),
    ],
)
def test_parse_digest_refuses_what_distribution_refuses(text, why):
    with pytest.raises(DigestError, match=why):
        parse_digest(text)


def test_digest_of_bytes_matches_sha256_of_empty_string():
    assert digest_of(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_v1_ids_and_short_forms():
    assert is_v1_id(HEX)
    assert not is_v1_id(HEX[:-1])
    assert short(f"sha256:{'b' * 64}") == "b" * 12
    assert short("c" * 64) == "c" * 12
