"""verify on copies of the fixture trees, clean and with one corruption at a time."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regtool.layout.detect import open_reader
from regtool.layout.store import open_storage
from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths as v2paths
from regtool.ops.verify import Finding, VerifyReport, verify
from tests.conftest import snapshot
from tests.support.refregistry import ALL_MANIFEST_TYPES, http_request, reference_registry
from tests.support.rgw import bucket_copy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED_V2 = json.loads((FIXTURES / "v2" / "EXPECTED.json").read_text())
EXPECTED_V1 = json.loads((FIXTURES / "v1" / "EXPECTED.json").read_text())

BUSYBOX = EXPECTED_V2["manifests"]["busybox:latest"]
BUSYBOX_LAYER = BUSYBOX["layers"][0]
MULTI = EXPECTED_V2["manifests"]["multi:latest"]
ARM_CHILD = MULTI["manifests"][1]["digest"]

V1_TAGS = {(t["repository"], t["tag"]): t for t in EXPECTED_V1["tags"]}
BUSYBOX_V1 = V1_TAGS[("library/busybox", "latest")]
SSHD_V1 = V1_TAGS[("library/sshd", "latest")]
PLAIN = EXPECTED_V1["special"]["plain_checksum"]
TARSUM = EXPECTED_V1["special"]["tarsum_checksum"]
IN_PROGRESS = EXPECTED_V1["in_progress"][0]


@pytest.fixture
def v2(v2_root: Path) -> Path:
    return v2_root


@pytest.fixture
def v1(v1_root: Path) -> Path:
    return v1_root


TWIN: Any = None  # the RGW cluster while a test runs: v2 trees are verified in a bucket too


@pytest.fixture(autouse=True)
def bucket_twin(rgw: Any, tmp_path: Path) -> Iterator[None]:
    """Every verify of a v2 tree a test runs is also run on a copy of the tree in an S3
    bucket (regular files only), and must find the same, unless the test set file times
    (a bucket's objects are all new) or made what a bucket cannot hold."""
    global TWIN
    TWIN = (rgw, tmp_path)
    yield
    TWIN = None


def no_twin() -> None:
    """The tree holds what a bucket cannot (set times, empty folders, non-files)."""
    global TWIN
    TWIN = None


def run(root: Path, **options: object) -> VerifyReport:
    report = verify(open_reader(root), jobs=2, **options)  # type: ignore[arg-type]
    if TWIN is not None and report.checked.layout == "v2":
        cluster, folder = TWIN
        config = bucket_copy(cluster, root, folder)
        twin = verify(open_storage(config=config).reader, jobs=2, **options)  # type: ignore[arg-type]
        assert twin.problems == report.problems
    return report


def only(report: VerifyReport, kind: str) -> Finding:
    found = [p for p in report.problems if p.kind == kind]
    assert len(found) == 1, report.problems
    return found[0]


def kinds(report: VerifyReport) -> set[tuple[str, str]]:
    return {(p.kind, p.severity) for p in report.problems}


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- v2 ------------------------------------------------------------------------------------


def test_verify_v2_clean_fixture_has_no_problems(v2: Path) -> None:
    report = run(v2)
    assert report.problems == ()
    blobs = list((v2 / v2paths.BLOBS).rglob("data"))
    assert report.checked.blobs == len(blobs) == 38
    assert report.checked.bytes == sum(p.stat().st_size for p in blobs)
    assert report.checked.repositories == len(EXPECTED_V2["catalog"])
    assert report.checked.tags == sum(len(t) for t in EXPECTED_V2["tags"].values())
    assert report.checked.manifests == 11
    assert report.checked.links == len(list((v2 / v2paths.REPOSITORIES).rglob("link")))


def test_verify_v2_quick_hashes_nothing(v2: Path) -> None:
    flip_byte(v2 / v2paths.blob_data(BUSYBOX_LAYER))
    report = run(v2, quick=True)
    assert report.problems == ()
    assert report.checked.bytes == 0


def test_verify_v2_flipped_byte_is_digest_mismatch(v2: Path) -> None:
    flip_byte(v2 / v2paths.blob_data(BUSYBOX_LAYER))
    finding = only(run(v2), "digest-mismatch")
    assert (finding.severity, finding.object) == ("error", BUSYBOX_LAYER)
    assert finding.path == v2paths.blob_data(BUSYBOX_LAYER)


def test_verify_v2_truncated_blob_is_digest_mismatch_or_size_mismatch_when_quick(v2: Path) -> None:
    data = v2 / v2paths.blob_data(BUSYBOX_LAYER)
    data.write_bytes(data.read_bytes()[:100])
    report = run(v2)
    assert kinds(report) == {("digest-mismatch", "error")}
    finding = only(run(v2, quick=True), "size-mismatch")
    assert (finding.severity, finding.object) == ("error", BUSYBOX_LAYER)
    assert finding.path == v2paths.blob_data(BUSYBOX_LAYER)


def test_verify_v2_deleted_layer_is_missing_blob(v2: Path) -> None:
    shutil.rmtree(v2 / v2paths.blob_dir(BUSYBOX_LAYER))
    report = run(v2)
    finding = only(report, "missing-blob")
    assert (finding.severity, finding.object) == ("error", BUSYBOX_LAYER)
    assert finding.path == v2paths.blob_data(BUSYBOX_LAYER)
    assert "busybox@" in finding.detail
    # the _layers links to it dangle: warnings only
    dangling = {p.path for p in report.problems if p.kind == "dangling-link"}
    assert v2paths.layer_link("busybox", BUSYBOX_LAYER) in dangling
    assert {p.severity for p in report.problems if p.kind == "dangling-link"} == {"warning"}


def test_verify_v2_deleted_index_child_is_missing_child(v2: Path) -> None:
    shutil.rmtree(v2 / v2paths.blob_dir(ARM_CHILD))
    report = run(v2)
    finding = only(report, "missing-child")
    assert (finding.severity, finding.object) == ("error", ARM_CHILD)
    assert finding.path == v2paths.blob_data(ARM_CHILD)
    assert "index multi@" in finding.detail
    assert not [p for p in report.problems if p.kind == "missing-blob"]


def test_verify_v2_index_child_without_revision_link_is_missing_child(v2: Path) -> None:
    (v2 / v2paths.revision_link("multi", ARM_CHILD)).unlink()
    finding = only(run(v2), "missing-child")
    assert (finding.severity, finding.object) == ("error", ARM_CHILD)
    assert finding.path == v2paths.revision_link("multi", ARM_CHILD)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (BUSYBOX["digest"] + "\n", "white space"),
        ("", "empty"),
        (BUSYBOX["digest"].upper().replace("SHA256", "sha256"), "upper-case"),
        (BUSYBOX["digest"][:-2], "length"),
    ],
    ids=["newline", "empty", "upper-case", "short"],
)
def test_verify_v2_malformed_tag_link_is_bad_link(v2: Path, content: str, reason: str) -> None:
    link = v2paths.tag_current_link("busybox", "latest")
    (v2 / link).write_text(content)
    finding = only(run(v2), "bad-link")
    assert (finding.severity, finding.object, finding.path) == ("error", "busybox:latest", link)
    assert reason in finding.detail


def test_verify_v2_malformed_revision_and_layer_links_are_bad_links(v2: Path) -> None:
    revision = v2paths.revision_link("busybox", BUSYBOX["digest"])
    layer = v2paths.layer_link("busybox", BUSYBOX_LAYER)
    (v2 / revision).write_text("")
    (v2 / layer).write_text(BUSYBOX_LAYER + "\n")
    report = run(v2)
    bad = {(p.path, p.object, p.severity) for p in report.problems if p.kind == "bad-link"}
    assert bad == {
        (revision, BUSYBOX["digest"], "error"),
        (layer, BUSYBOX_LAYER, "error"),
    }


def test_verify_v2_link_naming_another_digest_is_bad_link(v2: Path) -> None:
    layer = v2paths.layer_link("busybox", BUSYBOX_LAYER)
    (v2 / layer).write_text(BUSYBOX["config"])
    finding = only(run(v2), "bad-link")
    assert (finding.object, finding.path) == (BUSYBOX_LAYER, layer)


def test_verify_v2_accepts_sha512_alias_layer_link(v2: Path) -> None:
    alias = "sha512:" + "ab" * 64
    link = v2 / v2paths.layer_link("busybox", alias)
    link.parent.mkdir(parents=True)
    link.write_text(BUSYBOX_LAYER)
    assert run(v2).problems == ()


def test_verify_v2_tag_without_revision_link_is_dangling_link(v2: Path) -> None:
    (v2 / v2paths.revision_link("busybox", BUSYBOX["digest"])).unlink()
    finding = only(run(v2), "dangling-link")
    assert (finding.severity, finding.object) == ("error", BUSYBOX["digest"])
    assert finding.path == v2paths.tag_current_link("busybox", "latest")


def test_verify_v2_layer_link_to_missing_blob_is_a_warning(v2: Path) -> None:
    ghost = "sha256:" + "0" * 64
    link = v2 / v2paths.layer_link("busybox", ghost)
    link.parent.mkdir(parents=True)
    link.write_text(ghost)
    report = run(v2)
    finding = only(report, "dangling-link")
    assert (finding.severity, finding.object) == ("warning", ghost)
    assert finding.path == v2paths.layer_link("busybox", ghost)
    assert report.errors == 0


def test_verify_v2_missing_layer_link_is_unlinked_blob(v2: Path) -> None:
    shutil.rmtree(v2 / v2paths.layer_link("busybox", BUSYBOX_LAYER).rpartition("/")[0])
    finding = only(run(v2), "unlinked-blob")
    assert (finding.severity, finding.object) == ("error", BUSYBOX_LAYER)
    assert finding.path == v2paths.layer_link("busybox", BUSYBOX_LAYER)


def test_verify_v2_garbage_manifest_is_unreadable_manifest(v2: Path) -> None:
    import hashlib

    raw = b"this is not a manifest"
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    (v2 / v2paths.blob_dir(digest)).mkdir(parents=True)
    (v2 / v2paths.blob_data(digest)).write_bytes(raw)
    link = v2 / v2paths.revision_link("busybox", digest)
    link.parent.mkdir(parents=True)
    link.write_text(digest)
    finding = only(run(v2), "unreadable-manifest")
    assert (finding.severity, finding.object) == ("error", digest)
    assert finding.path == v2paths.blob_data(digest)


def test_verify_v2_folder_instead_of_blob_data_is_unreadable_file(v2: Path) -> None:
    no_twin()  # an empty folder: a bucket cannot hold it
    data = v2 / v2paths.blob_data(BUSYBOX["digest"])
    data.unlink()
    data.mkdir()
    report = run(v2)
    finding = only(report, "unreadable-file")
    assert (finding.severity, finding.object) == ("error", BUSYBOX["digest"])
    assert finding.path == v2paths.blob_data(BUSYBOX["digest"])
    assert report.errors == 1  # no second finding for the same broken blob


def test_verify_v2_folder_instead_of_link_is_unreadable_file(v2: Path) -> None:
    no_twin()  # an empty folder: a bucket cannot hold it
    link = v2 / v2paths.tag_current_link("busybox", "latest")
    link.unlink()
    link.mkdir()
    finding = only(run(v2), "unreadable-file")
    assert (finding.severity, finding.path) == (
        "error",
        v2paths.tag_current_link("busybox", "latest"),
    )


def test_verify_v2_junk_and_temp_files_are_warnings(v2: Path) -> None:
    no_twin()  # file times: a bucket cannot hold it
    blob_dir = v2 / v2paths.blob_dir(BUSYBOX_LAYER)
    (blob_dir / "notes.txt").write_text("hello")
    (blob_dir / "data.0b0d5a2c-3f5e-4b7b-9c1e-2f1a3b4c5d6e.tmp").write_bytes(b"x")
    layer_dir = v2 / v2paths.layer_link("busybox", BUSYBOX_LAYER).rpartition("/")[0]
    (layer_dir / "link.6f1c2b3a-0d9e-4c8b-a7f6-5e4d3c2b1a09.tmp").write_text("sha256:")
    (v2 / v2paths.BLOBS / "sha256" / "zz").mkdir()
    current = v2 / v2paths.tag_current_link("busybox", "latest")
    (current.parent / "link.0d1c2b3a-0d9e-4c8b-a7f6-5e4d3c2b1a09.tmp").write_text("")
    report = run(v2)
    assert report.errors == 0
    found = {(p.kind, p.severity, p.path) for p in report.problems}
    base = v2paths.blob_dir(BUSYBOX_LAYER)
    assert found == {
        ("junk-file", "warning", f"{base}/notes.txt"),
        ("junk-file", "warning", f"{v2paths.BLOBS}/sha256/zz"),
        ("temp-file", "warning", f"{base}/data.0b0d5a2c-3f5e-4b7b-9c1e-2f1a3b4c5d6e.tmp"),
        (
            "temp-file",
            "warning",
            v2paths.tag_current_link("busybox", "latest").rpartition("/")[0]
            + "/link.0d1c2b3a-0d9e-4c8b-a7f6-5e4d3c2b1a09.tmp",
        ),
        (
            "temp-file",
            "warning",
            v2paths.layer_link("busybox", BUSYBOX_LAYER).rpartition("/")[0]
            + "/link.6f1c2b3a-0d9e-4c8b-a7f6-5e4d3c2b1a09.tmp",
        ),
    }
    objects = {p.path: p.object for p in report.problems}
    assert objects[f"{base}/notes.txt"] == BUSYBOX_LAYER  # the blob whose folder holds it


def _upload(root: Path, repo: str, uuid: str, started: float | None, mtime: float) -> Path:
    folder = root / v2paths.upload_dir(repo, uuid)
    folder.mkdir(parents=True)
    (folder / "data").write_bytes(b"partial")
    if started is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        (root / v2paths.upload_startedat(repo, uuid)).write_text(stamp)
    for path in (*folder.iterdir(), folder):
        os.utime(path, (mtime, mtime))
    return folder


def test_verify_v2_untouched_upload_is_stale_upload(v2: Path) -> None:
    no_twin()  # file times: a bucket cannot hold it
    now = time.time()
    old = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    fresh = "6fa459ea-ee8a-4ca4-894e-db77e160355e"
    untimed = "16fd2706-8baf-433b-82eb-8c7fada847da"
    _upload(v2, "busybox", old, now - 2 * 86400, now - 2 * 86400)
    _upload(v2, "busybox", fresh, now - 600, now - 600)
    _upload(v2, "centos", untimed, None, now - 3 * 86400)  # no startedat: mtimes alone
    report = run(v2, now=now)
    stale = {(p.object, p.path, p.severity) for p in report.problems if p.kind == "stale-upload"}
    assert stale == {
        (old, v2paths.upload_dir("busybox", old), "warning"),
        (untimed, v2paths.upload_dir("centos", untimed), "warning"),
    }
    assert report.checked.uploads == 3
    shorter = run(v2, now=now, upload_age=300)
    assert {p.object for p in shorter.problems if p.kind == "stale-upload"} == {
        old,
        fresh,
        untimed,
    }


def test_verify_v2_old_upload_still_written_to_is_not_stale(v2: Path) -> None:
    """An upload started long ago whose data changed recently is still in use."""
    now = time.time()
    upload = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    folder = _upload(v2, "busybox", upload, now - 2 * 86400, now - 2 * 86400)
    os.utime(folder / "data", (now - 60, now - 60))
    assert run(v2, now=now).problems == ()


def test_verify_v2_repository_without_layers_folder_is_a_warning(v2: Path) -> None:
    shutil.rmtree(v2 / v2paths.layers_dir("busybox"))
    report = run(v2)
    finding = only(report, "no-layers-folder")
    assert (finding.severity, finding.object) == ("warning", "busybox")
    assert finding.path == v2paths.repository("busybox")
    assert report.errors == 0


# -- v1 ------------------------------------------------------------------------------------


def test_verify_v1_clean_fixture_has_only_the_unfinished_push(v1: Path) -> None:
    report = run(v1)
    finding = only(report, "inprogress-image")
    assert (finding.severity, finding.object) == ("warning", IN_PROGRESS)
    assert finding.path == v1paths.image_inprogress(IN_PROGRESS)
    assert len(report.problems) == 1
    assert report.checked.images == len(EXPECTED_V1["images"])
    assert report.checked.tags == len(EXPECTED_V1["tags"])
    assert report.checked.repositories == len({t["repository"] for t in EXPECTED_V1["tags"]})
    layers = list((v1 / v1paths.IMAGES).glob("*/layer"))
    assert report.checked.blobs == len(layers)
    assert report.checked.bytes == sum(p.stat().st_size for p in layers)


def test_verify_v1_flipped_layer_byte_is_digest_mismatch(v1: Path) -> None:
    image = BUSYBOX_V1["image"]
    flip_byte(v1 / v1paths.image_layer(image), 5)
    finding = only(run(v1), "digest-mismatch")
    assert (finding.severity, finding.object) == ("error", image)
    assert finding.path == v1paths.image_layer(image)


def test_verify_v1_plain_string_checksum_is_verified(v1: Path) -> None:
    assert not (v1 / v1paths.image_checksum(PLAIN)).read_text().startswith("[")
    flip_byte(v1 / v1paths.image_json(PLAIN), 3)
    finding = only(run(v1), "digest-mismatch")
    assert (finding.object, finding.path) == (PLAIN, v1paths.image_layer(PLAIN))


def test_verify_v1_tarsum_mismatch_is_only_a_warning(v1: Path) -> None:
    path = v1 / v1paths.image_checksum(TARSUM)
    simple, tarsum = json.loads(path.read_text())
    path.write_text(json.dumps([simple, "tarsum+sha256:" + "1" * 64]))
    report = run(v1)
    finding = only(report, "tarsum-mismatch")
    assert (finding.severity, finding.object) == ("warning", TARSUM)
    assert finding.path == v1paths.image_layer(TARSUM)
    assert tarsum.split(":")[1][:12] in finding.detail  # what the layer actually sums to
    assert report.errors == 0


def test_verify_v1_missing_checksum_is_unverifiable(v1: Path) -> None:
    image = BUSYBOX_V1["image"]
    (v1 / v1paths.image_checksum(image)).unlink()
    finding = only(run(v1), "unverifiable-checksum")
    assert (finding.severity, finding.object) == ("warning", image)
    assert finding.path == v1paths.image_checksum(image)


def test_verify_v1_deleted_layer_is_missing_image_file(v1: Path) -> None:
    image = SSHD_V1["image"]
    (v1 / v1paths.image_layer(image)).unlink()
    finding = only(run(v1), "missing-image-file")
    assert (finding.severity, finding.object) == ("error", image)
    assert finding.path == v1paths.image_layer(image)


def test_verify_v1_deleted_ancestor_folder_is_missing_image_file(v1: Path) -> None:
    base = BUSYBOX_V1["ancestry"][-1]
    shutil.rmtree(v1 / v1paths.image_dir(base))
    finding = only(run(v1), "missing-image-file")
    assert (finding.severity, finding.object) == ("error", base)
    assert finding.path == v1paths.image_dir(base)


def test_verify_v1_broken_ancestry_is_ancestry_mismatch(v1: Path) -> None:
    image = SSHD_V1["image"]
    ancestry = list(SSHD_V1["ancestry"])
    ancestry[1], ancestry[2] = ancestry[2], ancestry[1]
    (v1 / v1paths.image_ancestry(image)).write_text(json.dumps(ancestry))
    finding = only(run(v1), "ancestry-mismatch")
    assert (finding.severity, finding.object) == ("error", image)
    assert finding.path == v1paths.image_ancestry(image)
    assert "entry 1" in finding.detail


def test_verify_v1_inprogress_tagged_image_is_an_error(v1: Path) -> None:
    image = SSHD_V1["ancestry"][1]  # a parent of library/sshd:latest
    (v1 / v1paths.image_inprogress(image)).write_text("true")
    report = run(v1)
    errors = [p for p in report.problems if p.kind == "inprogress-image" and p.severity == "error"]
    assert [(p.object, p.path) for p in errors] == [(image, v1paths.image_inprogress(image))]
    assert "in the ancestry of tag" in errors[0].detail


def test_verify_v1_tag_naming_missing_image_is_dangling_link(v1: Path) -> None:
    ghost = "f" * 64
    tag = v1 / v1paths.tag_file("library/busybox", "ghost")
    tag.write_text(ghost)
    finding = only(run(v1), "dangling-link")
    assert (finding.severity, finding.object) == ("error", ghost)
    assert finding.path == v1paths.tag_file("library/busybox", "ghost")


def test_verify_v1_tag_file_without_an_id_is_bad_link(v1: Path) -> None:
    (v1 / v1paths.tag_file("library/busybox", "broken")).write_text("not an id")
    finding = only(run(v1), "bad-link")
    assert (finding.severity, finding.object) == ("error", "library/busybox:broken")
    assert finding.path == v1paths.tag_file("library/busybox", "broken")


def test_verify_v1_folder_instead_of_json_is_unreadable_file(v1: Path) -> None:
    image = SSHD_V1["image"]
    json_path = v1 / v1paths.image_json(image)
    json_path.unlink()
    json_path.mkdir()
    finding = only(run(v1), "unreadable-file")
    assert (finding.severity, finding.object) == ("error", image)
    assert finding.path == v1paths.image_json(image)


def test_verify_v1_junk_in_images_is_a_warning(v1: Path) -> None:
    (v1 / v1paths.IMAGES / "README").write_text("notes")
    finding = only(run(v1), "junk-file")
    assert (finding.severity, finding.path) == ("warning", v1paths.image_dir("README"))


def test_verify_writes_nothing(v1: Path, v2: Path) -> None:
    for root in (v1, v2):
        before = snapshot(root)
        run(root)
        assert snapshot(root) == before


def test_verify_jobs_one_and_many_agree(v1: Path, v2: Path) -> None:
    flip_byte(v2 / v2paths.blob_data(BUSYBOX_LAYER))
    flip_byte(v1 / v1paths.image_layer(SSHD_V1["image"]))
    for root in (v1, v2):
        one = verify(open_reader(root), jobs=1)
        many = verify(open_reader(root), jobs=4)
        assert one == many


def test_verify_v2_errors_are_what_the_reference_registry_fails_on(v2: Path) -> None:
    """Each error verify reports is a request distribution 2.8.2 cannot answer; the rest work."""
    centos6 = EXPECTED_V2["manifests"]["centos6:latest"]
    sshd = EXPECTED_V2["manifests"]["sshd:latest"]
    (v2 / v2paths.tag_current_link("busybox", "latest")).write_text(BUSYBOX["digest"] + "\n")
    shutil.rmtree(v2 / v2paths.blob_dir(centos6["layers"][-1]))
    shutil.rmtree(v2 / v2paths.layer_link("sshd", sshd["config"]).rpartition("/")[0])
    report = run(v2)
    errors = {(p.kind, p.object) for p in report.problems if p.severity == "error"}
    assert errors == {
        ("bad-link", "busybox:latest"),
        ("missing-blob", centos6["layers"][-1]),
        ("unlinked-blob", sshd["config"]),
    }
    accept = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
    with reference_registry(v2, readonly=True) as reg:
        status, _, _ = http_request("GET", f"{reg.url}/v2/busybox/manifests/latest", headers=accept)
        assert status == 500
        for repo, digest in (("centos6", centos6["layers"][-1]), ("sshd", sshd["config"])):
            status, _, _ = http_request("HEAD", f"{reg.url}/v2/{repo}/blobs/{digest}")
            assert status == 404
        for ref in ("centos:6.7", "centos:httpd", "gjkdhr/centos:httpd", "multi:latest"):
            repo, tag = ref.split(":")
            status, _, _ = http_request(
                "GET", f"{reg.url}/v2/{repo}/manifests/{tag}", headers=accept
            )
            assert status == 200, ref


def _manifest_with_urls(v2: Path, layer_media_type: str) -> str:
    """Tag busybox:urls: busybox's image plus a layer with `urls` whose blob is not stored."""
    from regtool.layout.v2.writer import V2Writer
    from regtool.storage.filesystem import FilesystemDriver

    doc = json.loads((v2 / v2paths.blob_data(BUSYBOX["digest"])).read_bytes())
    absent = "sha256:" + "ab" * 32
    doc["layers"].append(
        {
            "mediaType": layer_media_type,
            "digest": absent,
            "size": 1234,
            "urls": ["https://example.com/layer.tar.gz"],
        }
    )
    V2Writer(FilesystemDriver(v2)).put_manifest("busybox", json.dumps(doc).encode(), tag="urls")
    return absent


def test_verify_v2_urls_excuse_a_missing_blob_only_on_foreign_layers(v2: Path) -> None:
    absent = _manifest_with_urls(v2, "application/vnd.docker.image.rootfs.diff.tar.gzip")
    finding = only(run(v2), "missing-blob")
    assert (finding.severity, finding.object) == ("error", absent)


def test_verify_v2_foreign_layer_with_urls_may_be_absent(v2: Path) -> None:
    _manifest_with_urls(v2, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    assert not [p for p in run(v2).problems if p.kind == "missing-blob"]
