"""migrate: v1 chains to v2 images, checked against the reference registry and skopeo."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from regtool.errors import RootError, UsageError
from regtool.layout.v2 import paths as v2paths
from regtool.ops.migrate import apply_migration, plan_migration
from tests.support.refregistry import reference_registry, run_reference_gc
from tests.support.v1tree import (
    V1_FIXTURE,
    compress,
    image_id,
    layer_tars,
    make_tar,
    regtool_serve,
    regtool_verify,
    sha,
    skopeo_pull,
    snapshot,
    uncompressed_digest,
    write_image,
    write_tag,
)

EXPECTED = json.loads((V1_FIXTURE / "EXPECTED.json").read_text())


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1", symlinks=True))


def blob(root: Path, digest: str) -> bytes:
    return (root / v2paths.blob_data(digest)).read_bytes()


def tag_manifest(root: Path, repo: str, tag: str) -> tuple[str, dict]:
    digest = (root / v2paths.tag_current_link(repo, tag)).read_text()
    return digest, json.loads(blob(root, digest))


def v1_diff_ids(v1: Path, ancestry: list[str]) -> list[str]:
    return [
        uncompressed_digest((v1 / "images" / i / "layer").read_bytes()) for i in reversed(ancestry)
    ]


def test_migrated_fixture_is_pulled_by_skopeo_from_the_reference_registry(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    result = apply_migration(plan_migration(v1_copy, dest))
    assert result.skipped == ()
    assert result.tags == len(EXPECTED["tags"])
    report = regtool_verify(dest)
    assert report["problems"] == [] and report["checked"]["tags"] == len(EXPECTED["tags"])
    for data in (dest / v2paths.BLOBS).rglob("data"):  # and once more by hand
        assert data.parent.name == hashlib.sha256(data.read_bytes()).hexdigest()
    with reference_registry(dest) as registry, regtool_serve(dest) as ours:
        eligible, output = run_reference_gc(registry.config, dry_run=True)
        assert eligible == set(), output
        for entry in EXPECTED["tags"]:
            repo = entry["repository"].removeprefix("library/")
            want = v1_diff_ids(v1_copy, entry["ancestry"])
            for host in (registry.host, ours):
                pulled = tmp_path / host / f"{repo.replace('/', '_')}-{entry['tag']}"
                manifest = skopeo_pull(host, f"{repo}:{entry['tag']}", pulled)
                assert layer_tars(pulled, manifest) == want
                config_blob = pulled / manifest["config"]["digest"].split(":")[1]
                assert json.loads(config_blob.read_text())["rootfs"]["diff_ids"] == want


def test_gzip_layers_are_reused_byte_for_byte(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest))
    entry = next(e for e in EXPECTED["tags"] if e["repository"] == "library/centos")
    _, manifest = tag_manifest(dest, "centos", entry["tag"])
    stored = [sha((v1_copy / "images" / i / "layer").read_bytes()) for i in entry["ancestry"]]
    assert [layer["digest"] for layer in manifest["layers"]] == stored[::-1]


def test_config_follows_the_engine_conversion(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest))
    entry = next(e for e in EXPECTED["tags"] if e["repository"] == "gjkdhr/centos")
    _, manifest = tag_manifest(dest, "gjkdhr/centos", "httpd")
    config = json.loads(blob(dest, manifest["config"]["digest"]))
    for dropped in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway"):
        assert dropped not in config
    assert len(config["history"]) == len(entry["ancestry"]) == len(manifest["layers"])
    assert not any(h.get("empty_layer") for h in config["history"])
    # the chain holds a minimal json ({"id","parent"} from a Docker >= 1.10 push)
    minimal = EXPECTED["special"]["minimal_json"]
    position = entry["ancestry"][::-1].index(minimal)
    assert "created" not in config["history"][position]
    top = json.loads((v1_copy / "images" / entry["image"] / "json").read_text())
    assert config["created"] == top["created"]
    assert config["history"][-1]["created_by"] == " ".join(top["container_config"]["Cmd"])


def test_empty_layer_images_keep_their_layer(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest))
    _, manifest = tag_manifest(dest, "busybox", "latest")
    config = json.loads(blob(dest, manifest["config"]["digest"]))
    empty_tar = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    assert empty_tar in config["rootfs"]["diff_ids"]
    assert len(manifest["layers"]) == 2


def test_migrate_never_modifies_the_source(v1_copy, tmp_path):
    before = snapshot(v1_copy)
    apply_migration(plan_migration(v1_copy, tmp_path / "v2"))
    assert snapshot(v1_copy) == before


def test_rerun_writes_nothing_and_gives_the_same_digests(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    first = apply_migration(plan_migration(v1_copy, dest))
    before = snapshot(dest)
    second = apply_migration(plan_migration(v1_copy, dest))
    assert snapshot(dest) == before
    assert second.blobs_written == 0 and second.bytes_written == 0
    assert [m.manifest for m in second.migrated] == [m.manifest for m in first.migrated]
    assert {m.status for m in second.migrated} == {"present"}


def test_shared_blobs_are_written_once(v1_copy, tmp_path):
    plan = plan_migration(v1_copy, tmp_path / "v2")
    result = apply_migration(plan)
    files = list((tmp_path / "v2" / v2paths.BLOBS).rglob("data"))
    # the CentOS base is shared by five tags: 14 distinct layers, plus a config and a
    # manifest per tag
    assert sum(len(c.images) for c in plan.ready) > plan.images == 14
    assert result.blobs_written == len(files) == plan.images + 2 * len(plan.ready)


def test_library_prefix_dropped_unless_kept(v1_copy, tmp_path):
    plan = plan_migration(v1_copy, tmp_path / "a")
    assert "busybox" in plan.repositories and "gjkdhr/centos" in plan.repositories
    kept = plan_migration(v1_copy, tmp_path / "b", keep_library=True)
    assert "library/busybox" in kept.repositories


def test_oci_flag_writes_oci_manifests(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest, oci=True))
    _, manifest = tag_manifest(dest, "busybox", "latest")
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }


def small_tree(root: Path) -> dict[str, bytes]:
    """A v1 tree whose chain has an xz, a plain-tar, a bzip2 and a gzip layer, plus two
    broken chains (missing parent, missing layer); returns the uncompressed tars."""
    tars = {
        kind: make_tar({f"{kind}.txt": kind.encode() * 100})
        for kind in ("xz", "tar", "bzip2", "gzip")
    }
    parent = None
    for number, kind in enumerate(("xz", "tar", "bzip2", "gzip")):
        ident = image_id(f"good-{number}")
        write_image(
            root, ident, parent, compress(tars[kind], kind), cmd=f"step {kind}", minimal=number == 2
        )
        parent = ident
    write_tag(root, "library/mixed", "latest", parent)
    ghost = image_id("never-pushed")
    orphan = image_id("orphan-child")
    write_image(root, orphan, ghost, compress(tars["gzip"], "gzip"))
    write_tag(root, "broken/noparent", "latest", orphan)
    nolayer_base = image_id("nolayer-base")
    write_image(root, nolayer_base, None, compress(tars["gzip"], "gzip"))
    nolayer = image_id("nolayer")
    write_image(root, nolayer, nolayer_base, None)
    write_tag(root, "broken/nolayer", "v1", nolayer)
    return tars


def test_xz_bzip2_and_plain_layers_are_recompressed_to_gzip(tmp_path):
    v1, dest = tmp_path / "v1", tmp_path / "v2"
    tars = small_tree(v1)
    plan = plan_migration(v1, dest)
    mixed = next(c for c in plan.chains if c.repository == "mixed")
    assert len(mixed.recompress) == 3
    result = apply_migration(plan)
    assert [m.repository for m in result.migrated] == ["mixed"]
    _, manifest = tag_manifest(dest, "mixed", "latest")
    layers = [blob(dest, layer["digest"]) for layer in manifest["layers"]]
    assert all(data[:2] == b"\x1f\x8b" for data in layers)
    assert [uncompressed_digest(data) for data in layers] == [
        sha(tars[kind]) for kind in ("xz", "tar", "bzip2", "gzip")
    ]
    # deterministic gzip: migrating again elsewhere gives the same manifest
    again = apply_migration(plan_migration(v1, tmp_path / "again"))
    assert again.migrated[0].manifest == result.migrated[0].manifest


def test_broken_chains_are_skipped_and_reported_and_nothing_of_them_written(tmp_path):
    v1, dest = tmp_path / "v1", tmp_path / "v2"
    small_tree(v1)
    plan = plan_migration(v1, dest)
    problems = {c.source: c.problem for c in plan.skipped}
    assert set(problems) == {"broken/noparent:latest", "broken/nolayer:v1"}
    assert "json is missing" in problems["broken/noparent:latest"]
    assert "layer is missing" in problems["broken/nolayer:v1"]
    result = apply_migration(plan)
    assert {s.source for s in result.skipped} == set(problems)
    assert not (dest / v2paths.repository("broken")).exists()
    with reference_registry(dest) as registry:
        eligible, output = run_reference_gc(registry.config, dry_run=True)
    assert eligible == set(), output


def test_corrupt_gzip_layer_skips_its_chain_before_writing(tmp_path):
    v1, dest = tmp_path / "v1", tmp_path / "v2"
    good = compress(make_tar({"a": b"a" * 5000}), "gzip")
    base = image_id("base")
    write_image(v1, base, None, good[: len(good) // 2])  # truncated gzip
    write_tag(v1, "library/cut", "latest", base)
    result = apply_migration(plan_migration(v1, dest))
    assert [s.source for s in result.skipped] == ["library/cut:latest"]
    assert "truncated gzip" in result.skipped[0].problem
    assert not list(dest.rglob("data"))


def test_plan_refuses_a_v2_source_and_a_v1_destination(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest))
    with pytest.raises(RootError):
        plan_migration(dest, tmp_path / "other")
    with pytest.raises(UsageError):
        plan_migration(v1_copy, v1_copy)


def test_an_interrupted_run_leaves_no_tag_and_a_rerun_completes(v1_copy, tmp_path, monkeypatch):
    from regtool.ops import migrate as migrate_module

    dest = tmp_path / "v2"
    real = migrate_module._Run.put_layer
    calls = []

    def flaky(self, repo, image_id, digests):
        calls.append(image_id)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(self, repo, image_id, digests)

    monkeypatch.setattr(migrate_module._Run, "put_layer", flaky)
    with pytest.raises(KeyboardInterrupt):
        apply_migration(plan_migration(v1_copy, dest))
    assert list(dest.rglob("current")) == []  # no tag at all, so none dangling
    assert list(dest.rglob("*.tmp")) == []
    monkeypatch.setattr(migrate_module._Run, "put_layer", real)
    resumed = apply_migration(plan_migration(v1_copy, dest))
    clean = apply_migration(plan_migration(v1_copy, tmp_path / "clean"))
    assert [m.manifest for m in resumed.migrated] == [m.manifest for m in clean.migrated]
    assert resumed.blobs_present > 0


def test_hostile_v1_chains_are_skipped_and_the_rest_migrates(tmp_path):
    """A parent id like `../../x` and symlinks anywhere on the way to a tag file, an image
    folder, its json, ancestry or layer: each such chain is skipped with a finding, nothing
    outside the tree is read into a blob, the other chains migrate."""
    v1, dest, outside = tmp_path / "v1", tmp_path / "v2", tmp_path / "outside"
    outside.mkdir()
    secret = compress(make_tar({"etc/shadow": b"root:secret\n" * 50}), "gzip")
    (outside / "layer").write_bytes(secret)
    good = image_id("good")
    write_image(v1, good, None, compress(make_tar({"ok": b"ok"}), "gzip"))
    write_tag(v1, "library/good", "latest", good)
    bad_parent = image_id("bad-parent")
    write_image(v1, bad_parent, "../../x", compress(make_tar({"b": b"b"}), "gzip"))
    write_tag(v1, "library/badparent", "latest", bad_parent)
    for name in ("layer", "json", "ancestry", "folder"):
        ident = image_id(f"linked-{name}")
        write_image(v1, ident, good, secret)
        folder = v1 / "images" / ident
        if name == "folder":
            moved = Path(shutil.move(folder, outside / ident))
            folder.symlink_to(moved)
        else:
            (outside / f"{ident}-{name}").write_bytes((folder / name).read_bytes())
            (folder / name).unlink()
            (folder / name).symlink_to(outside / f"{ident}-{name}")
        write_tag(v1, f"linked/{name}", "latest", ident)
    (outside / "tag").write_text(good)
    write_tag(v1, "linked/tag", "latest", good)
    tag_file = v1 / "repositories" / "linked" / "tag" / "tag_latest"
    tag_file.unlink()
    tag_file.symlink_to(outside / "tag")
    before = snapshot(outside)
    result = apply_migration(plan_migration(v1, dest))
    assert [m.source for m in result.migrated] == ["library/good:latest"]
    problems = {s.source: s.problem for s in result.skipped}
    assert "'../../x' is not a v1 image id" in problems.pop("library/badparent:latest")
    linked = ("layer", "json", "ancestry", "folder", "tag")
    assert set(problems) == {f"linked/{name}:latest" for name in linked}
    assert all("is a symlink" in problem for problem in problems.values()), problems
    assert sha(secret)[7:] not in {p.parent.name for p in dest.rglob("data")}
    assert snapshot(outside) == before


def layer_blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "docker/registry/v2/blobs/sha256").glob("*/*")}


def test_layers_already_stored_under_another_compression_are_reused(v1_copy, tmp_path):
    """A v1 tree whose layers are plain tars (the same content as the gzip layers already
    migrated): nothing recompressed is stored again, the stored gzip blobs are linked."""
    dest = tmp_path / "v2"
    apply_migration(plan_migration(v1_copy, dest))
    plain = Path(shutil.copytree(v1_copy, tmp_path / "plain", symlinks=True))
    for layer in (plain / "images").glob("*/layer"):
        data = layer.read_bytes()
        if data[:2] == b"\x1f\x8b":
            layer.write_bytes(gzip.decompress(data))
    before = layer_blobs(dest)
    result = apply_migration(plan_migration(plain, dest, keep_library=True))
    assert result.layers_reused == 14  # every distinct v1 image of the fixture
    new = layer_blobs(dest) - before  # configs are the same; only manifests may differ
    for digest in new:
        doc = json.loads(blob(dest, f"sha256:{digest}"))
        assert doc.get("schemaVersion") == 2 and "layers" in doc, "a layer was stored again"
    _, manifest = tag_manifest(dest, "library/centos", "httpd")
    _, original = tag_manifest(dest, "centos", "httpd")
    assert manifest["layers"] == original["layers"]
    assert regtool_verify(dest)["problems"] == []


def test_a_moved_tag_is_reported_replaced_and_no_overwrite_keeps_it(v1_copy, tmp_path):
    dest = tmp_path / "v2"
    first = apply_migration(plan_migration(v1_copy, dest))
    before = {(t.repository, t.tag): t.manifest for t in first.migrated}
    plan = plan_migration(v1_copy, dest, oci=True)
    assert {(c.repository, c.tag): c.existing for c in plan.ready} == before
    kept = apply_migration(plan, overwrite=False)
    assert {t.status for t in kept.migrated} == {"kept"}
    assert {(t.repository, t.tag): t.previous for t in kept.kept} == before
    assert tag_manifest(dest, "centos", "6.7")[0] == before[("centos", "6.7")]
    moved = apply_migration(plan)
    assert {t.status for t in moved.migrated} == {"replaced"}
    assert {(t.repository, t.tag): t.previous for t in moved.migrated} == before
    assert tag_manifest(dest, "centos", "6.7")[1]["mediaType"].startswith("application/vnd.oci")
