"""ls, verify, gc and layers on trees holding hostile JSON or links to huge objects (issue 8).

A manifest nested 1,500 levels deep (the reference registry stores it) used to kill every
command with RecursionError on the whole tree; a tag naming a 300 MB blob was read whole
before the 4 MiB manifest check. Now each is one finding, one row warning, one refusal or
one error naming the file, with the rest of the tree handled as usual and memory flat.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths
from tests.conftest import V2_FIXTURE, copy_tree
from tests.support.hostile import (
    PEAK_RSS_LIMIT,
    Pushed,
    big_sparse_file,
    deep_array,
    push_deep_manifest,
    run_regtool,
    tag_big_blob,
    tag_manifest_with_big_config,
    v1_top_image,
)
from tests.support.places import Place

NESTED = "nested deeper than 128 levels"
OVER_MANIFEST_LIMIT = "larger than 4194304 bytes"
OVER_CONFIG_LIMIT = "larger than 8388608 bytes"


@pytest.fixture(scope="module")
def deep_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pushed]:
    root = copy_tree(V2_FIXTURE, tmp_path_factory.mktemp("deep") / "v2")
    return root, push_deep_manifest(root)


@pytest.fixture
def deep(deep_template: tuple[Path, Pushed], tmp_path: Path, place_of) -> tuple[Place, Pushed]:
    template, pushed = deep_template
    return place_of(copy_tree(template, tmp_path / "v2")), pushed


def rows(stdout: str) -> dict[str, dict]:
    return {f"{row['repository']}:{row['tag']}": row for row in json.loads(stdout)}


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "RecursionError" not in stderr, stderr


# -- a manifest nested 1,500 levels deep, pushed through the reference registry -------------


def test_ls_lists_every_tag_and_warns_on_the_deep_manifest_row(deep) -> None:
    place, pushed = deep
    code, stdout, stderr, _ = run_regtool("ls", *place.args, "--format", "json")
    assert code == 0, stderr
    listed = rows(stdout)
    assert len(listed) == 9  # the fixture's seven tags, the deep one and its shallow twin
    assert listed["busybox:deep"]["digest"] == pushed.digest
    assert NESTED in listed["busybox:deep"]["warnings"][0]
    assert listed["busybox:latest"]["warnings"] == [] and listed["busybox:latest"]["size"] > 0
    assert_no_traceback(stderr)


def test_ls_table_marks_the_row_and_prints_the_warning(deep) -> None:
    place, _ = deep
    code, stdout, stderr, _ = run_regtool("ls", *place.args)
    assert code == 0
    assert any(line.startswith("! busybox") and " deep " in line for line in stdout.splitlines())
    assert f"warning: {paths.V2}/blobs/sha256/" in stderr and NESTED in stderr


def test_verify_reports_the_deep_manifest_as_an_unreadable_manifest_error(deep) -> None:
    place, pushed = deep
    code, stdout, stderr, _ = run_regtool("verify", *place.args, "--format", "json")
    assert code == 1, stderr
    problems = json.loads(stdout)["problems"]
    assert [(p["kind"], p["severity"]) for p in problems] == [("unreadable-manifest", "error")]
    assert problems[0]["path"] == paths.blob_data(pushed.digest) and NESTED in problems[0]["detail"]
    assert_no_traceback(stderr)


def test_gc_refuses_naming_the_deep_manifest_and_deletes_nothing(deep) -> None:
    place, pushed = deep
    before = place.contents()
    code, _stdout, stderr, _ = run_regtool("gc", *place.args, "--yes", "--grace", "0")
    assert code == 1
    assert f"{paths.blob_data(pushed.digest)}: manifest {pushed.digest}" in stderr
    assert NESTED in stderr and "gc deleted nothing" in stderr
    assert place.contents() == before
    assert_no_traceback(stderr)


def test_layers_of_the_deep_image_is_an_error_naming_its_manifest(deep) -> None:
    place, pushed = deep
    code, stdout, stderr, _ = run_regtool("layers", "busybox:deep", *place.args)
    assert code == 3 and stdout == ""
    assert stderr.startswith("Error: busybox:deep cannot be read: ")
    assert paths.blob_data(pushed.digest) in stderr and NESTED in stderr
    assert_no_traceback(stderr)


def test_layers_of_other_images_still_work_beside_the_deep_manifest(deep) -> None:
    place, _ = deep
    code, stdout, stderr, _ = run_regtool("layers", "centos:httpd", *place.args)
    assert code == 0, stderr
    assert "7 layers" in stdout


# -- links naming a 300 MB blob ------------------------------------------------------------


@pytest.fixture
def big(v2_root: Path, place_of) -> tuple[Place, str, str]:
    manifest, config = tag_big_blob(v2_root), tag_manifest_with_big_config(v2_root)
    return place_of(v2_root), manifest, config


def test_ls_does_not_read_a_300_mb_manifest_or_config(big) -> None:
    place, manifest, _config = big
    code, stdout, stderr, peak = run_regtool("ls", *place.args, "--format", "json")
    assert peak < PEAK_RSS_LIMIT  # never read whole
    assert code == 0, stderr
    listed = rows(stdout)
    assert listed["busybox:big"]["warnings"] == [
        f"{paths.blob_data(manifest)}: unreadable manifest: {OVER_MANIFEST_LIMIT}"
    ]
    assert OVER_CONFIG_LIMIT in listed["busybox:bigconfig"]["warnings"][0]


def test_verify_reports_the_300_mb_manifest_without_reading_it_whole(big) -> None:
    place, manifest, _config = big
    args = ("verify", "--quick", *place.args, "--format", "json")
    code, stdout, stderr, peak = run_regtool(*args)
    assert peak < PEAK_RSS_LIMIT
    assert code == 1, stderr
    found = [p for p in json.loads(stdout)["problems"] if p["kind"] == "unreadable-manifest"]
    assert [p["path"] for p in found] == [paths.blob_data(manifest)]
    assert OVER_MANIFEST_LIMIT in found[0]["detail"]


def test_gc_refuses_on_a_300_mb_manifest_without_reading_it(big) -> None:
    place, manifest, _config = big
    code, _stdout, stderr, peak = run_regtool("gc", *place.args, "--dry-run")
    assert peak < PEAK_RSS_LIMIT
    assert code == 1
    assert paths.blob_data(manifest) in stderr and OVER_MANIFEST_LIMIT in stderr


@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [("busybox:big", 3, OVER_MANIFEST_LIMIT), ("busybox:bigconfig", 0, OVER_CONFIG_LIMIT)],
)
def test_layers_does_not_read_a_300_mb_manifest_or_config(big, ref, code, message) -> None:
    done, _stdout, stderr, peak = run_regtool("layers", ref, *big[0].args)
    assert peak < PEAK_RSS_LIMIT
    assert done == code and message in stderr
    assert_no_traceback(stderr)


# -- the legacy v1 layout: image json and ancestry -----------------------------------------


def deep_v1_json(root: Path, image: str) -> str:
    path = v1paths.image_json(image)
    (root / path).write_text(f'{{"id": "{image}", "x-deep": {deep_array()}}}')
    return path


def deep_v1_ancestry(root: Path, image: str) -> str:
    path = v1paths.image_ancestry(image)
    (root / path).write_text(deep_array())
    return path


def big_v1_json(root: Path, image: str) -> str:
    path = v1paths.image_json(image)
    big_sparse_file(root / path)
    return path


def big_v1_ancestry(root: Path, image: str) -> str:
    path = v1paths.image_ancestry(image)
    big_sparse_file(root / path)
    return path


# (how the file is damaged, what ls says, the kind of verify's finding)
V1_DAMAGE = [
    (deep_v1_json, NESTED, "unreadable-manifest"),
    (deep_v1_ancestry, NESTED, "ancestry-mismatch"),
    (big_v1_json, OVER_CONFIG_LIMIT, "unreadable-file"),
    (big_v1_ancestry, OVER_CONFIG_LIMIT, "unreadable-file"),
]


@pytest.mark.parametrize(
    ("damage", "message", "kind"), V1_DAMAGE, ids=lambda v: getattr(v, "__name__", v)
)
def test_v1_ls_warns_on_a_hostile_image_file_of_a_tag(v1_root, damage, message, kind) -> None:
    path = damage(v1_root, v1_top_image(v1_root))
    code, stdout, stderr, peak = run_regtool("ls", "--root", str(v1_root), "--format", "json")
    assert peak < PEAK_RSS_LIMIT
    assert code == 0, stderr
    listed = rows(stdout)
    assert len(listed) == 6
    assert f"{path}: unreadable" in listed["library/busybox:latest"]["warnings"][0]
    assert message in listed["library/busybox:latest"]["warnings"][0]


@pytest.mark.parametrize(
    ("damage", "message", "kind"), V1_DAMAGE, ids=lambda v: getattr(v, "__name__", v)
)
def test_v1_verify_reports_a_hostile_image_file_as_an_error(v1_root, damage, message, kind) -> None:
    path = damage(v1_root, v1_top_image(v1_root))
    args = ("verify", "--quick", "--root", str(v1_root), "--format", "json")
    code, stdout, stderr, peak = run_regtool(*args)
    assert peak < PEAK_RSS_LIMIT
    assert code == 1, stderr
    problems = json.loads(stdout)["problems"]
    found = [p for p in problems if p["path"] == path]
    assert [(p["kind"], p["severity"]) for p in found] == [(kind, "error")]
    if kind != "ancestry-mismatch":  # that one quotes the start of the file instead
        assert message in found[0]["detail"]
    assert_no_traceback(stderr)


@pytest.mark.parametrize(
    "damage", [deep_v1_json, big_v1_json], ids=lambda v: getattr(v, "__name__", "")
)
def test_v1_gc_refuses_when_a_tagged_image_json_is_hostile(v1_root, damage) -> None:
    path = damage(v1_root, v1_top_image(v1_root))
    code, _stdout, stderr, peak = run_regtool("gc", "--root", str(v1_root), "--dry-run")
    assert peak < PEAK_RSS_LIMIT
    assert code == 1 and path in stderr
    assert_no_traceback(stderr)


def test_v1_layers_shows_the_chain_and_names_the_hostile_json(v1_root) -> None:
    path = deep_v1_json(v1_root, v1_top_image(v1_root))
    code, stdout, stderr, _ = run_regtool("layers", "busybox", "--root", str(v1_root))
    assert code == 0 and "2 layers" in stdout
    assert path in stderr and NESTED in stderr
    assert_no_traceback(stderr)
