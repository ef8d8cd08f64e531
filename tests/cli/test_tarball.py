"""The import and export commands: output, exit codes, nothing written on bad input."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout.v2 import paths as v2paths
from regtool.ops.migrate import apply_migration, plan_migration
from tests.support.bombs import MIB, run_regtool_measured, zeros_bzip2, zeros_digest, zeros_gzip
from tests.support.v1tree import V1_FIXTURE, sha, snapshot

runner = CliRunner()


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    v1 = Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1", symlinks=True))
    apply_migration(plan_migration(v1, tmp_path / "v2"))
    return tmp_path / "v2"


def run(*args: str):
    return runner.invoke(app, list(args))


def test_export_then_import_round_trips(migrated, tmp_path):
    out = tmp_path / "two.tar"
    exported = run("export", "busybox", "centos:6.7", "-o", str(out), "--root", str(migrated))
    assert exported.exit_code == 0, exported.output
    assert "busybox:latest" in exported.stdout and out.exists()
    imported = run("import", str(out), "--root", str(tmp_path / "new"), "-f", "json")
    assert imported.exit_code == 0, imported.output
    doc = json.loads(imported.stdout)
    assert doc["format"] == "oci"
    assert sorted(i["repository"] for i in doc["images"]) == ["busybox", "centos"]


def test_import_tag_renames_one_image(migrated, tmp_path):
    out = tmp_path / "one.tar"
    assert run("export", "busybox", "-o", str(out), "--root", str(migrated)).exit_code == 0
    result = run("import", str(out), "--tag", "tools/box:1", "--root", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert "tools/box:1" in result.stdout


def test_import_tag_with_several_images_is_a_usage_error(migrated, tmp_path):
    out = tmp_path / "two.tar"
    run("export", "busybox", "sshd", "-o", str(out), "--root", str(migrated))
    result = run("import", str(out), "--tag", "x:y", "--root", str(tmp_path / "new"))
    assert result.exit_code == 2
    assert "--tag renames one image" in result.stderr


def test_import_of_a_damaged_tarball_exits_3_and_writes_nothing(migrated, tmp_path):
    out = tmp_path / "one.tar"
    run("export", "centos:httpd", "-o", str(out), "--root", str(migrated))
    data = out.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) * 6 // 10])
    before = snapshot(migrated)
    result = run("import", str(tmp_path / "cut.tar"), "--root", str(migrated))
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert snapshot(migrated) == before


def test_export_of_an_unknown_reference_is_a_usage_error(migrated, tmp_path):
    result = run("export", "nope:1", "-o", str(tmp_path / "x.tar"), "--root", str(migrated))
    assert result.exit_code == 2
    assert not (tmp_path / "x.tar").exists()


def test_layers_that_expand_to_gigabytes_import_in_bounded_memory(tmp_path):
    """1 GiB of zeros as bzip2 (under 1 KiB) and 2 GiB as gzip (2 MiB): legitimate layers,
    imported without ever holding more than a few MiB of them (peak RSS under 300 MB)."""
    layers = {"bz/layer.tar": zeros_bzip2(1024), "gz/layer.tar": zeros_gzip(2048)}
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [zeros_digest(1024), zeros_digest(2048)]},
        }
    ).encode()
    entry = {"Config": "config.json", "RepoTags": ["bombs:1"], "Layers": list(layers)}
    tar_path = tmp_path / "bombs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in {
            "manifest.json": json.dumps([entry]).encode(),
            "config.json": config,
            **layers,
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "v2"
    run = run_regtool_measured("import", str(tar_path), "--root", str(dest), "-f", "json")
    assert run.returncode == 0, run.stderr
    assert run.peak_rss < 300 * 10**6, f"peak RSS {run.peak_rss / 10**6:.0f} MB"
    (image,) = json.loads(run.stdout)["images"]
    manifest = json.loads((dest / v2paths.blob_data(image["manifest"])).read_bytes())
    assert manifest["layers"][1]["digest"] == sha(zeros_gzip(2048))  # gzip kept as it is
    assert (dest / v2paths.blob_data(manifest["layers"][0]["digest"])).stat().st_size < 10 * MIB
