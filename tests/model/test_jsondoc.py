"""Bounded JSON parsing: nesting and size limits become the parser's own error, never a crash."""

from __future__ import annotations

import json

import pytest

from regtool.model.config import ConfigError, parse_config, parse_v1_json
from regtool.model.jsondoc import MAX_DEPTH, JsonError, parse_json
from regtool.model.manifest import ManifestError, parse_manifest
from regtool.model.v1convert import V1ConvertError, load_v1_json

CONFIG = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.config.v1+json"}
DESCRIPTOR = {"mediaType": CONFIG["mediaType"], "digest": "sha256:" + "a" * 64, "size": 2}
MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": DESCRIPTOR,
    "layers": [],
}
V1_JSON = {"id": "b" * 64, "created": "2015-09-02T19:44:00Z"}


def nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def with_field(doc: dict, value: str) -> bytes:
    """`doc` plus a field `extra` holding `value` (raw JSON text), as bytes."""
    return (json.dumps(doc)[:-1] + f', "extra": {value}}}').encode()


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 999, 1500, 100_000])
@pytest.mark.parametrize("nest", [nested_array, nested_object])
def test_parse_json_refuses_documents_nested_too_deep(nest, depth: int) -> None:
    with pytest.raises(JsonError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nest(depth).encode())


def test_parse_json_accepts_the_deepest_allowed_document() -> None:
    assert parse_json(nested_array(MAX_DEPTH)) == json.loads(nested_array(MAX_DEPTH))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"history": ["[{" * 5_000], "many": [[1]] * 500})
    assert parse_json(text.encode())["history"][0].startswith("[{[{")


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"", "not JSON"), (b"{", "not JSON"), (b"\xff\xfe\xfd", "not JSON"), (b"1" * 5000, "not")],
)
def test_parse_json_turns_decode_errors_into_json_error(raw: bytes, message: str) -> None:
    with pytest.raises(JsonError, match=message):
        parse_json(raw)


def test_parse_json_refuses_more_than_the_limit_before_parsing() -> None:
    assert parse_json(b"[1]", limit=3) == [1]
    with pytest.raises(JsonError, match="larger than 3 bytes"):
        parse_json(b"[1] ", limit=3)


# every parser of stored JSON: (parse function, its error type, a valid document)
PARSERS = [
    (parse_manifest, ManifestError, MANIFEST),
    (parse_config, ConfigError, CONFIG),
    (parse_v1_json, ConfigError, V1_JSON),
    (load_v1_json, V1ConvertError, V1_JSON),
]


@pytest.mark.parametrize(
    ("parse", "error", "doc"), PARSERS, ids=lambda v: getattr(v, "__name__", "")
)
@pytest.mark.parametrize("depth", [MAX_DEPTH, 1500])
def test_every_stored_json_parser_refuses_a_deep_field_with_its_own_error(
    parse, error, doc, depth: int
) -> None:
    parse(with_field(doc, nested_array(MAX_DEPTH - 1)))  # the limit counts the top object
    with pytest.raises(error, match="nested deeper"):
        parse(with_field(doc, nested_array(depth)))


@pytest.mark.parametrize("value", ["[]", "{}", "[[[1]]]", "2"])
def test_manifest_with_a_non_string_media_type_is_a_manifest_error(value: str) -> None:
    raw = json.dumps(MANIFEST).replace('"application/vnd.oci.image.manifest.v1+json"', value)
    with pytest.raises(ManifestError, match="mediaType"):
        parse_manifest(raw.encode())
