"""`regtool verify` as users run it: exit codes, JSON shape, table, bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths

FINDING_FIELDS = ["kind", "severity", "object", "path", "detail", "hint"]
COUNTS = {"blobs", "bytes", "links", "manifests", "tags", "repositories", "images", "uploads"}


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, ["verify", *args])
        # never a traceback: only clean exits
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def _busybox_layer(expected: dict) -> str:
    return expected["manifests"]["busybox:latest"]["layers"][0]


def test_verify_clean_v2_exits_0_with_json_counts(
    run, v2_root: Path, v2_expected: dict, place_of
) -> None:
    result = run(*place_of(v2_root).args, "--format", "json", "--jobs", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["checked", "problems"]
    assert doc["problems"] == []
    assert COUNTS <= set(doc["checked"])
    assert doc["checked"]["layout"] == "v2"
    assert doc["checked"]["repositories"] == len(v2_expected["catalog"])
    assert doc["checked"]["blobs"] == 38
    assert doc["checked"]["bytes"] > 0


def test_verify_corrupt_blob_exits_1_with_finding(
    run, v2_root: Path, v2_expected: dict, place_of
) -> None:
    layer = _busybox_layer(v2_expected)
    data = v2_root / v2paths.blob_data(layer)
    data.write_bytes(data.read_bytes()[:-1])
    result = run(*place_of(v2_root).args, "-f", "json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [list(p) for p in problems] == [FINDING_FIELDS]
    assert problems[0]["kind"] == "digest-mismatch"
    assert problems[0]["object"] == layer
    assert problems[0]["path"] == v2paths.blob_data(layer)
    assert problems[0]["hint"]


def test_verify_quick_skips_hashing(run, v2_root: Path, v2_expected: dict, place_of) -> None:
    data = v2_root / v2paths.blob_data(_busybox_layer(v2_expected))
    content = bytearray(data.read_bytes())
    content[0] ^= 1
    data.write_bytes(bytes(content))
    result = run(*place_of(v2_root).args, "--quick", "-f", "yaml")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["problems"] == [] and doc["checked"]["bytes"] == 0


def test_verify_warnings_alone_exit_0_and_table_shows_them(run, v1_root: Path) -> None:
    result = run("--root", str(v1_root))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("checked 16 images, 6 tags, 5 repos")
    assert lines[0].endswith("0 errors, 1 warning")
    assert "SEVERITY" in lines[1] and "DETAIL" in lines[1]
    assert any(line.startswith("warning     inprogress-image") for line in lines)
    assert "Hints:" in lines
    assert any(line.startswith("  inprogress-image: ") for line in lines)


def test_verify_v1_error_exits_1_in_table(run, v1_root: Path, v1_expected: dict) -> None:
    image = v1_expected["tags"][0]["image"]
    (v1_root / v1paths.image_layer(image)).unlink()
    result = run("--root", str(v1_root))
    assert result.exit_code == 1
    assert "missing-image-file" in result.stdout
    assert "1 error, 1 warning" in result.stdout.splitlines()[0]


def test_verify_clean_table_is_one_summary_line(run, v2_root: Path, place_of) -> None:
    result = run(*place_of(v2_root).args)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "checked 38 blobs, 11 manifests, 68 links, 7 tags, 6 repos (44.0 KiB re-hashed): "
        "0 errors, 0 warnings"
    ]


def test_verify_missing_root_exits_3(run, tmp_path: Path) -> None:
    result = run("--root", str(tmp_path / "nowhere"))
    assert result.exit_code == 3
    assert "Error: storage root" in result.output


@pytest.mark.parametrize("age", ["soon", "-1h", "3y"])
def test_verify_bad_upload_age_exits_2(run, v2_root: Path, age: str) -> None:
    result = run("--root", str(v2_root), "--upload-age", age)
    assert result.exit_code == 2
    assert "--upload-age" in result.output


def test_verify_upload_age_option_reports_stale_upload(run, v2_root: Path) -> None:
    upload = v2_root / v2paths.upload_dir("busybox", "1b4e28ba-2fa1-41d2-883f-0016d3cca427")
    upload.mkdir(parents=True)
    (upload / "startedat").write_text("2020-01-01T00:00:00Z")
    hour_ago = time.time() - 3600
    for path in (upload / "startedat", upload):
        os.utime(path, (hour_ago, hour_ago))
    result = run("--root", str(v2_root), "--upload-age", "30m", "-f", "json")
    assert result.exit_code == 0
    (problem,) = json.loads(result.stdout)["problems"]
    assert (problem["kind"], problem["severity"]) == ("stale-upload", "warning")


def test_verify_help_has_an_example(run) -> None:
    result = run("--help")
    assert result.exit_code == 0 and "Example:" in result.stdout


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def _folder_instead_of_file(path: Path) -> None:
    path.unlink()
    path.mkdir()


V2_CORRUPTIONS = {
    "flipped-blob": (lambda r, e: _flip(r / v2paths.blob_data(_busybox_layer(e))), 1),
    "truncated-blob": (
        lambda r, e: (r / v2paths.blob_data(_busybox_layer(e))).write_bytes(b"x"),
        1,
    ),
    "newline-link": (
        lambda r, e: (r / v2paths.tag_current_link("busybox", "latest")).write_text(
            e["manifests"]["busybox:latest"]["digest"] + "\n"
        ),
        1,
    ),
    "empty-revision-link": (
        lambda r, e: (
            r / v2paths.revision_link("multi", e["manifests"]["multi:latest"]["digest"])
        ).write_text(""),
        1,
    ),
    "manifest-is-a-folder": (
        lambda r, e: _folder_instead_of_file(
            r / v2paths.blob_data(e["manifests"]["multi:latest"]["digest"])
        ),
        1,
    ),
    "junk-in-blob-folder": (
        lambda r, e: (r / v2paths.blob_dir(_busybox_layer(e)) / "junk").write_text("x"),
        0,
    ),
}


@pytest.mark.parametrize("name", list(V2_CORRUPTIONS))
def test_verify_v2_corruptions_exit_codes_without_traceback(
    run, v2_root: Path, v2_expected: dict, name: str
) -> None:
    corrupt, code = V2_CORRUPTIONS[name]
    corrupt(v2_root, v2_expected)
    for fmt in ("table", "json"):
        result = run("--root", str(v2_root), "--format", fmt)
        assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["problems"]


V1_CORRUPTIONS = {
    "flipped-layer": (lambda r, i: _flip(r / v1paths.image_layer(i)), 1),
    "deleted-layer": (lambda r, i: (r / v1paths.image_layer(i)).unlink(), 1),
    "garbage-ancestry": (lambda r, i: (r / v1paths.image_ancestry(i)).write_text("[1, 2"), 1),
    "json-is-a-folder": (lambda r, i: _folder_instead_of_file(r / v1paths.image_json(i)), 1),
    "garbage-checksum": (lambda r, i: (r / v1paths.image_checksum(i)).write_text("{}"), 0),
    "inprogress-tagged": (lambda r, i: (r / v1paths.image_inprogress(i)).write_text("true"), 1),
}


@pytest.mark.parametrize("name", list(V1_CORRUPTIONS))
def test_verify_v1_corruptions_exit_codes_without_traceback(
    run, v1_root: Path, v1_expected: dict, name: str
) -> None:
    corrupt, code = V1_CORRUPTIONS[name]
    corrupt(v1_root, v1_expected["tags"][0]["image"])
    for fmt in ("table", "json"):
        result = run("--root", str(v1_root), "--format", fmt)
        assert result.exit_code == code, result.output
    assert len(json.loads(result.stdout)["problems"]) >= 2  # the fixture's own warning too


def test_verify_reports_a_repository_loop_as_an_error_with_a_hint(run, v2_root: Path) -> None:
    (v2_root / v2paths.repository("loop")).symlink_to("..")
    result = run("--root", str(v2_root), "--format", "json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [(p["kind"], p["severity"], p["path"]) for p in problems] == [
        ("symlink", "error", v2paths.repository("loop"))
    ]
    assert "never follows symbolic links" in problems[0]["hint"]
