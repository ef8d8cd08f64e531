"""REFs as people type them: a registry host in front, short digests, patterns that match
nothing; on the v2 fixture, a v1 tree and an S3 bucket."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from regtool.errors import BadReferenceError, NoMatchError, UnknownReferenceError
from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.ops.resolve import check_pattern, locate, resolve_reference
from tests.support.rgw import bucket_copy
from tests.support.v1tree import V1_FIXTURE, V2_FIXTURE

HTTPD = "sha256:17814c04ed28832835058ee06b27b2bd2676a644d7cf1ce93ed4e8d563f5adcc"


@pytest.mark.parametrize(
    "text",
    [
        "centos:httpd",
        "127.0.0.1:5443/centos:httpd",
        "localhost/centos:httpd",
        "registry.example.com/library/centos:httpd",
        "centos@17814c04ed28",
        "localhost:5000/centos@sha256:17814c04ed28832835058",
    ],
)
def test_every_form_names_the_same_manifest(text):
    assert resolve_reference(open_reader(V2_FIXTURE), text).digest == HTTPD


def test_locate_hands_back_the_full_digest_of_a_short_one():
    ref, repository = locate(open_reader(V2_FIXTURE), "centos@17814c04ed28")
    assert (repository, ref.digest) == ("centos", HTTPD)


def test_an_ambiguous_short_digest_lists_the_candidates(tmp_path):
    root = Path(shutil.copytree(V2_FIXTURE, tmp_path / "v2", symlinks=True))
    twins = [HTTPD[:-1] + "0", HTTPD[:-1] + "1"]  # two revisions sharing 63 hex digits
    for digest in twins:
        link = root / v2paths.revision_link("centos", digest)
        link.parent.mkdir(parents=True)
        link.write_text(digest)
    with pytest.raises(BadReferenceError, match="is ambiguous") as raised:
        resolve_reference(open_reader(root), f"centos@{HTTPD[7:30]}")
    assert raised.value.message.endswith(", ".join(sorted([*twins, HTTPD])))
    with pytest.raises(UnknownReferenceError, match="centos has no manifest sha256:000000000000"):
        resolve_reference(open_reader(root), "centos@000000000000")


def test_a_short_v1_image_id_names_the_tagged_image():
    reader = open_reader(V1_FIXTURE)
    top = next(link.digest for link in reader.tags("library/centos") if link.tag == "httpd")
    assert resolve_reference(reader, f"127.0.0.1:5000/centos@{top[:12]}").digest == top


def test_a_pattern_matching_nothing_suggests_at_most_three_names():
    reader = open_reader(V2_FIXTURE)
    assert check_pattern(reader, "127.0.0.1:5443/cent*") == "cent*"
    with pytest.raises(NoMatchError, match="no repository matches 'centso'") as raised:
        check_pattern(reader, "centso")
    assert raised.value.hint == "did you mean: centos, centos6, gjkdhr/centos"
    with pytest.raises(NoMatchError) as raised:
        check_pattern(reader, "zzzz")
    assert raised.value.hint == "`regtool ls` lists them all"


def test_unknown_repository_suggests_at_most_three(tmp_path):
    with pytest.raises(UnknownReferenceError) as raised:
        resolve_reference(open_reader(V2_FIXTURE), "cento:httpd")
    assert raised.value.message == "unknown repository: cento"
    assert raised.value.hint == "did you mean: centos, centos6, gjkdhr/centos"


def test_host_and_short_digest_resolve_on_a_bucket(rgw, tmp_path):
    config = bucket_copy(rgw, V2_FIXTURE, tmp_path)
    reader = open_storage(None, config, bulk=False).reader
    assert resolve_reference(reader, "127.0.0.1:5443/centos@17814c04ed28").digest == HTTPD
