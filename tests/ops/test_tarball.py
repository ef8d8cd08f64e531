"""import/export of image tarballs, checked with podman, skopeo and the reference registry."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from regtool.errors import UnreadableError, UsageError
from regtool.layout.detect import open_reader
from regtool.layout.v2 import paths as v2paths
from regtool.model.v1convert import BlobRef, build_manifest
from regtool.ops.migrate import apply_migration, plan_migration
from regtool.ops.tararchive import Archive
from regtool.ops.tarball import import_tarball
from regtool.ops.tarexport import export_images
from tests.support.clients import skopeo
from tests.support.ocitar import gzip_layer, oci_dir_of, oci_tar_of
from tests.support.refregistry import reference_registry, run_reference_gc
from tests.support.serve import subprocess_server
from tests.support.v1tree import (
    V1_FIXTURE,
    V2_FIXTURE,
    layer_tars,
    regtool_serve,
    regtool_verify,
    sha,
    skopeo_pull,
    snapshot,
    uncompressed_digest,
)

V1_EXPECTED = json.loads((V1_FIXTURE / "EXPECTED.json").read_text())
CENTOS_HTTPD = next(
    t for t in V1_EXPECTED["tags"] if t["repository"] == "library/centos" and t["tag"] == "httpd"
)


class Podman:
    """podman with its own vfs store below `base` (the runroot must be short: /tmp/rt-*)."""

    def __init__(self, base: Path) -> None:
        self.runroot = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
        self.cmd = [
            "podman",
            "--root",
            str(base / "root"),
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            "--tmpdir",
            str(base / "tmp"),
        ]
        (base / "tmp").mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.cmd, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """podman save tarballs of images pulled from the reference registry serving the v2
    fixture: docker-archive (default), oci-archive, and two images in one tar."""
    base = tmp_path_factory.mktemp("podman")
    root = Path(shutil.copytree(V2_FIXTURE, base / "v2", symlinks=True))
    podman = Podman(base / "store")
    files = {}
    with reference_registry(root) as registry:
        busybox, centos = f"{registry.host}/busybox:latest", f"{registry.host}/centos:httpd"
        for ref in (busybox, centos):
            podman("pull", "-q", "--tls-verify=false", ref)
        files["docker"] = base / "centos-docker.tar"
        podman("save", "-o", str(files["docker"]), centos)
        files["oci"] = base / "busybox-oci.tar"
        podman("save", "--format", "oci-archive", "-o", str(files["oci"]), busybox)
        files["multi"] = base / "multi.tar"
        podman("save", "-m", "-o", str(files["multi"]), busybox, centos)
        inspect = json.loads(podman("image", "inspect", centos))[0]
    podman.close()
    files["centos_diff_ids"] = inspect["RootFS"]["Layers"]
    return files


def pulled_diff_ids(host: str, ref: str, dest: Path) -> list[str]:
    return layer_tars(dest, skopeo_pull(host, ref, dest))


def test_podman_save_imports_and_is_pulled_from_both_registries(saved, tmp_path):
    dest = tmp_path / "v2"
    result = import_tarball(saved["docker"], dest)
    assert result.format == "docker-archive"
    assert [(i.repository, i.tag) for i in result.images] == [("centos", "httpd")]
    with reference_registry(dest) as registry, regtool_serve(dest) as ours:
        eligible, output = run_reference_gc(registry.config, dry_run=True)
        assert eligible == set(), output
        for host in (registry.host, ours):
            got = pulled_diff_ids(host, "centos:httpd", tmp_path / host)
            assert got == saved["centos_diff_ids"]


def test_podman_oci_archive_keeps_its_manifest_digest(saved, tmp_path):
    result = import_tarball(saved["oci"], tmp_path / "v2")
    assert result.format == "oci"
    with tarfile.open(saved["oci"]) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert result.images[0].manifest == index["manifests"][0]["digest"]
    assert (result.images[0].repository, result.images[0].tag) == ("busybox", "latest")


def test_every_image_of_a_multi_image_tar_is_imported(saved, tmp_path):
    result = import_tarball(saved["multi"], tmp_path / "v2")
    assert sorted((i.repository, i.tag) for i in result.images) == [
        ("busybox", "latest"),
        ("centos", "httpd"),
    ]


def test_tag_renames_a_single_image_and_refuses_several(saved, tmp_path):
    result = import_tarball(saved["docker"], tmp_path / "v2", tag="web/app:1.0")
    assert [(i.repository, i.tag) for i in result.images] == [("web/app", "1.0")]
    with pytest.raises(UsageError):
        import_tarball(saved["multi"], tmp_path / "v2", tag="web/app:1.0")


def test_reimport_writes_nothing_and_gives_the_same_digests(saved, tmp_path):
    dest = tmp_path / "v2"
    first = import_tarball(saved["multi"], dest)
    before = snapshot(dest)
    second = import_tarball(saved["multi"], dest)
    assert snapshot(dest) == before
    assert second.blobs_written == 0
    assert [i.manifest for i in second.images] == [i.manifest for i in first.images]
    assert {i.status for i in second.images} == {"present"}


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def legacy_save_tar(path: Path) -> None:
    """A Docker <= 1.9 `docker save centos:httpd` tar built from the v1 fixture."""
    with tarfile.open(path, "w") as tar:
        repos = {"centos": {"httpd": CENTOS_HTTPD["image"]}}
        add(tar, "repositories", json.dumps(repos).encode())
        for image_id in CENTOS_HTTPD["ancestry"]:
            folder = V1_FIXTURE / "images" / image_id
            add(tar, f"{image_id}/VERSION", b"1.0")
            add(tar, f"{image_id}/json", (folder / "json").read_bytes())
            add(tar, f"{image_id}/layer.tar", uncompressed_layer(image_id))


def test_legacy_docker_save_converts_exactly_as_migrate_does(tmp_path):
    legacy_save_tar(tmp_path / "old.tar")
    imported = import_tarball(tmp_path / "old.tar", tmp_path / "a")
    assert imported.format == "v1"
    migrated = apply_migration(
        plan_migration(Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1")), tmp_path / "b")
    )
    want = next(m for m in migrated.migrated if m.source == "library/centos:httpd")

    def config_of(root: Path, digest: str) -> str:
        doc = json.loads((root / v2paths.blob_data(digest)).read_bytes())
        return doc["config"]["digest"]

    assert config_of(tmp_path / "a", imported.images[0].manifest) == config_of(
        tmp_path / "b", want.manifest
    )


def oci_layout_tar(path: Path, *, corrupt: bool = False, docker25: bool = True) -> str:
    """An OCI layout tar as Docker 25+ saves it: uncompressed layers, index.json with the
    containerd name annotation, plus manifest.json. Returns the config digest."""
    layers = [uncompressed_layer(i) for i in reversed(CENTOS_HTTPD["ancestry"])]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
        }
    ).encode()
    doc = json.loads(build_manifest(config, [BlobRef(sha(x), len(x)) for x in layers], oci=True))
    for layer in doc["layers"]:
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    manifest = json.dumps(doc).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": doc["mediaType"],
                "digest": sha(manifest),
                "size": len(manifest),
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/centos:httpd",
                    "org.opencontainers.image.ref.name": "httpd",
                },
            }
        ],
    }
    with tarfile.open(path, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", json.dumps(index).encode())
        for blob in (config, manifest, *layers):
            data = blob
            if corrupt and blob is layers[-1]:
                data = blob[:-1] + b"\1"
            add(tar, f"blobs/sha256/{sha(blob)[7:]}", data)
        if docker25:
            entry = [
                {
                    "Config": f"blobs/sha256/{sha(config)[7:]}",
                    "RepoTags": ["centos:httpd"],
                    "Layers": [f"blobs/sha256/{sha(x)[7:]}" for x in layers],
                }
            ]
            add(tar, "manifest.json", json.dumps(entry).encode())
    return sha(config)


def uncompressed_layer(image_id: str) -> bytes:
    return gzip.decompress((V1_FIXTURE / "images" / image_id / "layer").read_bytes())


def test_docker25_oci_layout_tar_imports_with_gzip_layers(tmp_path):
    config = oci_layout_tar(tmp_path / "oci.tar")
    dest = tmp_path / "v2"
    result = import_tarball(tmp_path / "oci.tar", dest)
    assert result.format == "oci"
    image = result.images[0]
    assert (image.repository, image.tag) == ("centos", "httpd")
    manifest = json.loads((dest / v2paths.blob_data(image.manifest)).read_bytes())
    assert manifest["config"]["digest"] == config
    assert {x["mediaType"] for x in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    with reference_registry(dest) as registry:
        got = pulled_diff_ids(registry.host, "centos:httpd", tmp_path / "pulled")
    assert got == [
        uncompressed_digest(uncompressed_layer(i)) for i in reversed(CENTOS_HTTPD["ancestry"])
    ]


def seeded_destination(tmp_path: Path, saved: dict) -> Path:
    dest = tmp_path / "v2"
    import_tarball(saved["oci"], dest)
    return dest


def test_a_layer_whose_hash_does_not_match_its_name_changes_nothing(saved, tmp_path):
    dest = seeded_destination(tmp_path, saved)
    oci_layout_tar(tmp_path / "bad.tar", corrupt=True)
    before = snapshot(dest)
    with pytest.raises(UnreadableError, match="centos:httpd"):
        import_tarball(tmp_path / "bad.tar", dest)
    assert snapshot(dest) == before


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_a_truncated_tarball_is_refused_and_changes_nothing(saved, tmp_path, cut):
    dest = seeded_destination(tmp_path, saved)
    data = saved["docker"].read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: int(len(data) * cut)])
    before = snapshot(dest)
    with pytest.raises(UnreadableError):
        import_tarball(tmp_path / "cut.tar", dest)
    assert snapshot(dest) == before


def test_a_failed_import_into_a_new_root_leaves_no_root(tmp_path):
    oci_layout_tar(tmp_path / "bad.tar", corrupt=True)
    with pytest.raises(UnreadableError, match="is named"):
        import_tarball(tmp_path / "bad.tar", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_file_that_is_no_tar_is_refused(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"hello" * 500)
    with pytest.raises(UnreadableError, match="not a readable tar"):
        import_tarball(tmp_path / "x.tar", tmp_path / "v2")


def test_export_loads_with_podman_and_keeps_config_and_layers(tmp_path):
    v1 = Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1"))
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1, dest))
    out = tmp_path / "images.tar"
    result = export_images(open_reader(dest), ["busybox", "centos:httpd"], out)
    assert [i.reference for i in result.images] == ["busybox:latest", "centos:httpd"]
    podman = Podman(tmp_path / "podman")
    try:
        loaded = podman("load", "-q", "-i", str(out))
        assert "centos:httpd" in loaded
        for image in result.images:
            manifest = json.loads((dest / v2paths.blob_data(image.manifest)).read_bytes())
            config_digest = manifest["config"]["digest"]
            config = json.loads((dest / v2paths.blob_data(config_digest)).read_bytes())
            info = json.loads(podman("image", "inspect", f"localhost/{image.reference}"))[0]
            assert "sha256:" + info["Id"] == config_digest
            assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    finally:
        podman.close()
    # and the tarball imports back to the very same manifests
    back = import_tarball(out, tmp_path / "back")
    assert [i.manifest for i in back.images] == [i.manifest for i in result.images]


def nested_index_tar(path: Path, platforms: list[str], present: list[str]) -> None:
    """Docker 25+ save of a multi-platform image: index.json -> index -> one manifest per
    platform, only the `present` ones in the archive (uncompressed layers)."""
    blobs: dict[str, bytes] = {}
    children = []
    for arch in platforms:
        layer = make_arch_layer(arch)
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
            }
        ).encode()
        doc = json.loads(build_manifest(config, [BlobRef(sha(layer), len(layer))], oci=True))
        doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
        manifest = json.dumps(doc).encode()
        children.append(
            {
                "mediaType": doc["mediaType"],
                "digest": sha(manifest),
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
        if arch in present:
            blobs.update({sha(x): x for x in (layer, config, manifest)})
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }
    ).encode()
    blobs[sha(index)] = index
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(index),
                "size": len(index),
                "annotations": {"io.containerd.image.name": "docker.io/multi:1"},
            }
        ],
    }
    with tarfile.open(path, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", json.dumps(top).encode())
        for digest, data in blobs.items():
            add(tar, f"blobs/sha256/{digest[7:]}", data)


def make_arch_layer(arch: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add(tar, f"etc/{arch}", arch.encode() * 100)
    return buffer.getvalue()


def test_single_platform_save_of_a_multi_platform_image_imports_that_image(tmp_path):
    nested_index_tar(tmp_path / "one.tar", ["amd64", "arm64"], ["amd64"])
    dest = tmp_path / "v2"
    image = import_tarball(tmp_path / "one.tar", dest).images[0]
    assert (image.repository, image.tag) == ("multi", "1")
    manifest = json.loads((dest / v2paths.blob_data(image.manifest)).read_bytes())
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    with reference_registry(dest) as registry:
        assert len(pulled_diff_ids(registry.host, "multi:1", tmp_path / "pulled")) == 1


def test_multi_platform_save_imports_an_index_of_the_recompressed_images(tmp_path):
    nested_index_tar(tmp_path / "all.tar", ["amd64", "arm64"], ["amd64", "arm64"])
    dest = tmp_path / "v2"
    image = import_tarball(tmp_path / "all.tar", dest).images[0]
    index = json.loads((dest / v2paths.blob_data(image.manifest)).read_bytes())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    with reference_registry(dest) as registry:
        eligible, output = run_reference_gc(registry.config, dry_run=True)
        assert eligible == set(), output
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--all",
                "--src-tls-verify=false",
                f"docker://{registry.host}/multi:1",
                f"oci:{tmp_path / 'oci'}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


# -- failures: what a failed import leaves ---------------------------------------------------
def test_a_failed_import_keeps_a_layer_a_concurrent_push_linked(tmp_path, monkeypatch):
    """import reads layer 1, a client pushes an image with the same layer 1 (the server may
    link an existing blob), the import then fails on layer 2: the pushed image stays whole."""
    shared, damaged = gzip_layer("shared"), gzip_layer("damaged")
    oci_tar_of(tmp_path / "bad.tar", "imp/app:1", [shared, damaged], damaged=damaged)
    oci_dir_of(tmp_path / "push", "1", [shared, gzip_layer("own")])
    dest = tmp_path / "v2"
    pushes = []
    real_chunks = Archive.chunks

    def chunks(self, name):  # the moment layer 2 is opened, layer 1 has been read
        if name.endswith(sha(damaged)[7:]) and not pushes:
            pushes.append(
                skopeo(
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--retry-times",
                    "0",
                    "--dest-tls-verify=false",
                    f"oci:{tmp_path / 'push'}:1",
                    f"docker://{served.host}/other/app:1",
                )
            )
        yield from real_chunks(self, name)

    with subprocess_server(dest) as served:
        monkeypatch.setattr(Archive, "chunks", chunks)
        with pytest.raises(UnreadableError, match="imp/app:1") as failed:
            import_tarball(tmp_path / "bad.tar", dest)
        monkeypatch.setattr(Archive, "chunks", real_chunks)
        assert pushes, "the push never ran"
        assert failed.value.hint.startswith("nothing was written")
        pulled = skopeo_pull(served.host, "other/app:1", tmp_path / "pulled")
    assert [x["digest"] for x in pulled["layers"]][0] == sha(shared)
    assert regtool_verify(dest)["problems"] == []
    assert not (dest / v2paths.repository("imp")).exists()  # nor its empty _uploads


def test_a_failed_import_leaves_no_folder_it_created(saved, tmp_path):
    dest = seeded_destination(tmp_path, saved)
    folders = sorted(p for p in dest.rglob("*") if p.is_dir())
    before = snapshot(dest)
    oci_tar_of(
        tmp_path / "bad.tar",
        "new/space/app:1",
        [gzip_layer("one"), gzip_layer("two")],
        damaged=gzip_layer("two"),
    )
    with pytest.raises(UnreadableError, match="new/space/app:1"):
        import_tarball(tmp_path / "bad.tar", dest)
    assert snapshot(dest) == before
    assert sorted(p for p in dest.rglob("*") if p.is_dir()) == folders
