"""Hostile tarballs: nothing outside the archive is ever read, nothing oversized is read
whole, and each is refused as a damaged archive (UnreadableError, exit 3) writing nothing."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from regtool.errors import UnreadableError
from regtool.layout.v2 import paths as v2paths
from regtool.ops import tararchive
from regtool.ops.tarball import import_tarball
from tests.support.bombs import REPO_ROOT
from tests.support.ocitar import add, gzip_layer, oci_image, oci_index
from tests.support.v1tree import sha

LAYER = gzip_layer("layer", 2000)
CONFIG, MANIFEST = oci_image([LAYER])


def docker_archive(path: Path, entry: dict, members: dict[str, bytes], links=()) -> Path:
    """manifest.json holding `entry`, the `members`, and (name, target, kind) links."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "manifest.json", json.dumps([entry]).encode())
        for name, data in members.items():
            add(tar, name, data)
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return path


def entry(config: str = "config.json", layers: tuple[str, ...] = ("layer.tar",)) -> dict:
    return {"Config": config, "RepoTags": ["app:1"], "Layers": list(layers)}


def refused(path: Path, dest: Path, match: str) -> None:
    with pytest.raises(UnreadableError, match=match):
        import_tarball(path, dest)
    assert not dest.exists()


def test_a_well_formed_archive_with_a_hardlinked_layer_imports(tmp_path):
    path = docker_archive(
        tmp_path / "ok.tar",
        entry(layers=("linked.tar",)),
        {"config.json": CONFIG, "layer.tar": LAYER},
        [("linked.tar", "layer.tar", tarfile.LNKTYPE)],
    )
    image = import_tarball(path, tmp_path / "v2").images[0]
    manifest = json.loads((tmp_path / "v2" / v2paths.blob_data(image.manifest)).read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]] == [sha(LAYER)]


@pytest.mark.parametrize(
    "name", ["../../../etc/hostname", "/etc/hostname", "blobs/../../../../etc/hostname"]
)
def test_member_names_never_reach_outside_the_archive(tmp_path, name):
    path = docker_archive(tmp_path / "a.tar", entry(config=name), {"layer.tar": LAYER})
    refused(path, tmp_path / "v2", "is missing")


@pytest.mark.parametrize("target", ["/etc/hostname", "../../../etc/hostname"])
def test_symlink_and_hardlink_members_resolve_inside_the_archive_only(tmp_path, target):
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        path = docker_archive(
            tmp_path / f"{kind!r}.tar",
            entry(),
            {"layer.tar": LAYER},
            [("config.json", target, kind)],
        )
        refused(path, tmp_path / "v2", "is missing")


def test_a_symlink_loop_is_refused(tmp_path):
    links = [("config.json", "a", tarfile.SYMTYPE), ("a", "config.json", tarfile.SYMTYPE)]
    path = docker_archive(tmp_path / "loop.tar", entry(), {"layer.tar": LAYER}, links)
    refused(path, tmp_path / "v2", "too many symlinks")


def test_json_members_are_capped_and_deep_nesting_is_refused(tmp_path):
    huge = json.dumps([entry()] * 60_000).encode()  # about 5 MiB of manifest.json
    assert len(huge) > tararchive.MAX_SMALL
    with tarfile.open(tmp_path / "huge.tar", "w") as tar:
        add(tar, "manifest.json", huge)
    refused(tmp_path / "huge.tar", tmp_path / "v2", "too large for a json file")
    with tarfile.open(tmp_path / "deep.tar", "w") as tar:
        add(tar, "manifest.json", b"[" * 100_000 + b"]" * 100_000)
    refused(tmp_path / "deep.tar", tmp_path / "v2", "nested deeper than")
    deep_config = b'{"rootfs":' * 50_000 + b"1" + b"}" * 50_000
    path = docker_archive(tmp_path / "c.tar", entry(), {"config.json": deep_config})
    refused(path, tmp_path / "v2", "nested deeper than")


def test_a_deeply_nested_oci_manifest_member_is_refused(tmp_path):
    deep = b'{"schemaVersion":2,"layers":' + b"[" * 1500 + b"]" * 1500 + b"}"
    with tarfile.open(tmp_path / "oci.tar", "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", oci_index(deep, {"io.containerd.image.name": "app:1"}))
        add(tar, f"blobs/sha256/{sha(deep)[7:]}", deep)
    refused(tmp_path / "oci.tar", tmp_path / "v2", "nested deeper than")


def test_a_descriptor_digest_that_is_a_path_is_refused(tmp_path):
    doc = json.loads(MANIFEST)
    doc["layers"][0]["digest"] = "sha256:../../../../etc/hostname"
    manifest = json.dumps(doc).encode()
    with tarfile.open(tmp_path / "oci.tar", "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", oci_index(manifest, {"io.containerd.image.name": "app:1"}))
        for blob in (CONFIG, manifest, LAYER):
            add(tar, f"blobs/sha256/{sha(blob)[7:]}", blob)
    refused(tmp_path / "oci.tar", tmp_path / "v2", "bad digest")


def test_an_extended_header_too_large_to_read_whole_is_refused(tmp_path):
    """tarfile reads pax headers whole: 64 MiB of them hide in 64 KiB of gzip."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "config.json", CONFIG)
        info = tarfile.TarInfo("layer.tar")
        info.size = len(LAYER)
        info.pax_headers = {"comment": "x" * (64 << 20)}
        tar.addfile(info, io.BytesIO(LAYER))
    (tmp_path / "pax.tar.gz").write_bytes(gzip.compress(raw.getvalue(), 1))
    refused(tmp_path / "pax.tar.gz", tmp_path / "v2", "extended header of")


def test_more_members_than_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tararchive, "MAX_MEMBERS", 50)  # the real cap: 100,000
    members = {f"junk/{n}": b"" for n in range(51)}
    path = docker_archive(tmp_path / "many.tar", entry(), members)
    refused(path, tmp_path / "v2", "more than 50 members")


def test_a_sparse_member_claiming_a_petabyte_is_refused_not_read(tmp_path):
    """A pax sparse member of 1 PB takes 512 bytes and would be hashed for days."""
    sparse_map = b"1\n0\n0\n".ljust(512, b"\0")  # one empty data region
    with tarfile.open(tmp_path / "sparse.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "manifest.json", json.dumps([entry()]).encode())
        add(tar, "config.json", CONFIG)
        info = tarfile.TarInfo("layer.tar")
        info.size = len(sparse_map)
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "layer.tar",
            "GNU.sparse.realsize": str(10**15),
        }
        tar.addfile(info, io.BytesIO(sparse_map))
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "import", str(tmp_path / "sparse.tar")]
        + ["--root", str(tmp_path / "v2")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "layer.tar is a sparse file" in done.stderr
    assert not (tmp_path / "v2").exists()
