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
from tests.support.ocitar import add, gzip_layer, oci_image, oci_index, oci_tar_of
from tests.support.smalldisk import assert_stopped_cleanly, inode_limits, leftovers, small_tmpfs
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


def test_export_into_a_missing_folder_names_the_file_asked_for(migrated, tmp_path):
    target = tmp_path / "missing" / "x.tar"
    result = run("export", "busybox", "-o", str(target), "--root", str(migrated))
    assert result.exit_code == 3
    first = result.stderr.splitlines()[0]
    assert first == f"Error: cannot write {target}: No such file or directory"
    assert ".tmp" not in result.stderr


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


def test_import_into_a_full_disk_exits_3_and_leaves_the_storage_as_it_was(tmp_path):
    oci_tar_of(tmp_path / "seed.tar", "seed:1", [gzip_layer("seed", 100_000)])
    big = tmp_path / "big.tar"
    oci_tar_of(big, "app:1", [gzip_layer("small", 100_000), gzip_layer("big", 6_000_000)])
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        root = disk / "registry"
        assert run("import", str(tmp_path / "seed.tar"), "--root", str(root)).exit_code == 0
        before, empty_before = snapshot(root), leftovers(root)
        result = run("import", str(big), "--root", str(root))
        assert result.exit_code == 3, result.output
        assert result.stderr.splitlines() == [
            f"Error: cannot import {big}: no space left on device in {root}; nothing was written",
            "Hint: free some space and run the import again",
        ]
        assert snapshot(root) == before
        assert leftovers(root) == empty_before


def test_an_import_failing_at_any_write_leaves_a_sound_storage(tmp_path):
    """The storage can take one more file or folder each run, so the import fails at each
    of its writes in turn (phase 1 staging, publishing, links, revisions, tags) until it
    fits: every time exit 3 with one error line, no temp file, no empty folder, and a
    storage verify finds sound (no tag naming something missing)."""
    archive = tmp_path / "two.tar"
    two_images_tar(archive)
    outcomes = []
    for limit, disk in inode_limits(tmp_path / "disk", 6, 200):
        root = disk / "registry"
        (root / "docker" / "registry" / "v2").mkdir(parents=True)
        skeleton = frozenset({root / "docker" / "registry" / "v2"})
        result = run("import", str(archive), "--root", str(root))
        outcomes.append(result.exit_code)
        assert_stopped_cleanly(result, root, skeleton, limit)
        if result.exit_code == 0:
            break
    assert outcomes[-1] == 0 and outcomes.count(3) > 20, outcomes


def two_images_tar(path: Path) -> None:
    """One OCI layout tar holding two images (two repositories, three layers)."""
    with tarfile.open(path, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        descriptors = []
        for name, layers in (("one/app:1", ["l1", "l2"]), ("two/app:1", ["l3"])):
            blobs = [gzip_layer(layer, 5000) for layer in layers]
            config, manifest = oci_image(blobs)
            index = json.loads(oci_index(manifest, {"io.containerd.image.name": name}))
            descriptors += index["manifests"]
            for blob in (config, manifest, *blobs):
                add(tar, f"blobs/sha256/{sha(blob)[7:]}", blob)
        add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": descriptors}).encode())
