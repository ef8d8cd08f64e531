"""import and migrate into an S3 bucket (a real Ceph RGW) write what they write on a disk.

What they write is checked by `regtool ls` on the bucket, against the same command run
into a local root, and by the reference registry serving the bucket (skopeo pulls every
blob, digests checked). A failed import leaves the bucket's object set exactly as it was:
no blob, no link, no tag, no upload session or chunk object, no multipart upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regtool.cli.app import app
from tests.ops.test_tarball import legacy_save_tar, oci_layout_tar
from tests.support.bombs import REPO_ROOT
from tests.support.clients import skopeo_copy_all
from tests.support.ocitar import gzip_layer, oci_tar_of
from tests.support.refregistry import reference_registry
from tests.support.rgw import new_bucket, s3_client, s3load
from tests.support.v1tree import V1_FIXTURE, V2_FIXTURE

PREFIX = "/registry"
CHUNK = 5 * 1024 * 1024  # the smallest part: a 6 MB layer goes up as a multipart upload


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def empty_bucket(rgw: Any, tmp_path: Path) -> tuple[str, Path]:
    """A new bucket and a config naming it (chunksize 5 MiB)."""
    bucket = new_bucket(s3_client(rgw))
    config = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "s3.yml")
    doc = yaml.safe_load(config.read_text())
    doc["storage"]["s3"]["chunksize"] = CHUNK
    config.write_text(yaml.safe_dump(doc))
    return bucket, config


def objects(rgw: Any, bucket: str) -> dict[str, str]:
    """Every object of the bucket (key -> ETag), and no multipart upload left open."""
    client = s3_client(rgw)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    return found


def ls_json(*where: str) -> list[dict]:
    code, out = regtool("ls", *where, "-f", "json")
    assert code == 0, out
    return json.loads(out)


def pull_and_check(host: str, ref: str, dest: Path) -> str:
    """skopeo copy to dir: with every blob's sha256 checked; returns the manifest digest."""
    skopeo_copy_all(f"docker://{host}/{ref}", f"dir:{dest}")
    for blob in dest.iterdir():
        if len(blob.name) == 64:
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    return "sha256:" + hashlib.sha256((dest / "manifest.json").read_bytes()).hexdigest()


def tarballs(tmp_path: Path) -> list[tuple[Path, str]]:
    """(tarball, --tag): a legacy docker save, a Docker 25+ save, an OCI tar of gzip layers
    one of which is bigger than a part."""
    legacy_save_tar(tmp_path / "legacy.tar")
    oci_layout_tar(tmp_path / "docker25.tar")
    layers = [gzip_layer("small"), gzip_layer("big", size=6_000_000)]
    oci_tar_of(tmp_path / "oci.tar", "apps/web:2", layers)
    return [
        (tmp_path / "legacy.tar", "old/centos:httpd"),
        (tmp_path / "docker25.tar", "new/centos:httpd"),
        (tmp_path / "oci.tar", "apps/web:2"),
    ]


def test_tarballs_imported_into_a_bucket_are_listed_and_pulled_whole_by_the_reference(
    rgw: Any, tmp_path: Path
) -> None:
    bucket, config = empty_bucket(rgw, tmp_path)
    local = tmp_path / "local"
    written = {}
    for tarball, tag in tarballs(tmp_path):
        code, out = regtool(
            "import", str(tarball), "-t", tag, "--config", str(config), "-f", "json"
        )
        assert code == 0, out
        image = json.loads(out)["images"][0]
        assert image["status"] == "written"
        written[tag] = image["manifest"]
        code, out = regtool("import", str(tarball), "-t", tag, "--root", str(local))
        assert code == 0, out
    assert not any("/_uploads/" in key for key in objects(rgw, bucket))  # no session left
    listed = ls_json("--config", str(config))
    assert {f"{r['repository']}:{r['tag']}" for r in listed} == set(written)
    assert listed == ls_json("--root", str(local))
    code, out = regtool("verify", "--config", str(config), "-f", "json")
    assert code == 0 and json.loads(out)["problems"] == [], out
    s3 = yaml.safe_load(config.read_text())["storage"]["s3"]
    with reference_registry(tmp_path, s3=s3) as registry:
        for tag, manifest in written.items():
            dest = tmp_path / "pulled" / tag.replace("/", "_").replace(":", "_")
            dest.parent.mkdir(exist_ok=True)
            assert pull_and_check(registry.host, tag, dest) == manifest


def test_a_reimport_into_a_bucket_writes_nothing(rgw: Any, tmp_path: Path) -> None:
    bucket, config = empty_bucket(rgw, tmp_path)
    tarball, tag = tarballs(tmp_path)[2]
    code, out = regtool("import", str(tarball), "--config", str(config))
    assert code == 0, out
    before = objects(rgw, bucket)
    code, out = regtool("import", str(tarball), "--config", str(config), "-f", "json")
    assert code == 0, out
    result = json.loads(out)
    assert [i["status"] for i in result["images"]] == ["present"]
    assert result["blobs_written"] == 0 and objects(rgw, bucket) == before


@pytest.mark.parametrize("damage", ["digest", "truncated"])
def test_a_damaged_tarball_leaves_the_bucket_as_it_was(
    rgw: Any, tmp_path: Path, damage: str
) -> None:
    bucket, config = empty_bucket(rgw, tmp_path)
    seed, _ = tarballs(tmp_path)[1]
    code, out = regtool("import", str(seed), "--config", str(config))
    assert code == 0, out
    before = objects(rgw, bucket)
    big = gzip_layer("big-damaged", size=6_000_000)  # a multipart chunk, then the failure
    layers = [gzip_layer("fresh"), big, gzip_layer("after")]
    bad = tmp_path / "bad.tar"
    oci_tar_of(bad, "fresh/app:1", layers, damaged=big if damage == "digest" else None)
    if damage == "truncated":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) * 3 // 4])
    code, out = regtool("import", str(bad), "--config", str(config))
    assert code == 3 and "Traceback" not in out, out
    if damage == "digest":  # found while streaming the big layer, after its first part
        assert "fresh/app:1" in out and "nothing was written" in out, out
    assert objects(rgw, bucket) == before


def test_migrate_into_a_bucket_lists_as_a_migrate_onto_a_disk(rgw: Any, tmp_path: Path) -> None:
    bucket, config = empty_bucket(rgw, tmp_path)
    v1 = Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1"))
    code, out = regtool(
        "migrate", "--from", str(v1), "--config", str(config), "--dry-run", "-f", "json"
    )
    assert code == 0, out
    assert json.loads(out)["destination"] == f"s3://{bucket}/registry"
    assert objects(rgw, bucket) == {}  # a dry run writes nothing
    code, out = regtool("migrate", "--from", str(v1), "--config", str(config), "--yes")
    assert code == 0, out
    code, out = regtool("migrate", "--from", str(v1), "--to", str(tmp_path / "v2"), "--yes")
    assert code == 0, out
    remote = ls_json("--config", str(config))
    assert remote == ls_json("--root", str(tmp_path / "v2")) and remote
    assert not any("/_uploads/" in key for key in objects(rgw, bucket))
    before = objects(rgw, bucket)
    code, out = regtool(
        "migrate", "--from", str(v1), "--config", str(config), "--yes", "-f", "json"
    )
    assert code == 0, out
    assert json.loads(out)["blobs_written"] == 0 and objects(rgw, bucket) == before
    code, out = regtool("verify", "--config", str(config), "-f", "json")
    assert code == 0 and json.loads(out)["problems"] == [], out


def test_migrate_refuses_a_bucket_holding_a_v1_tree(rgw: Any, tmp_path: Path) -> None:
    bucket, config = empty_bucket(rgw, tmp_path)
    image = "a" * 64
    client = s3_client(rgw)
    client.put_object(Bucket=bucket, Key=f"registry/images/{image}/json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="registry/repositories/library/x/tag_1", Body=image)
    before = objects(rgw, bucket)
    code, out = regtool("migrate", "--from", str(V1_FIXTURE), "--config", str(config), "--yes")
    assert code == 2 and "holds a v1 tree" in out, out
    code, out = regtool("import", str(tarballs(tmp_path)[2][0]), "--config", str(config))
    assert code == 2 and "holds a v1 tree" in out, out
    assert objects(rgw, bucket) == before


def test_a_tarball_piped_into_a_bucket_is_imported_and_moved_tags_reported(
    rgw: Any, tmp_path: Path
) -> None:
    """`regtool export ... -o - | regtool import - --config s3.yml`, two real processes."""
    bucket, config = empty_bucket(rgw, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    regtool_cmd = [sys.executable, "-m", "regtool"]

    def piped(*import_args: str) -> tuple[int, str, str]:
        export = subprocess.Popen(
            [*regtool_cmd, "export", "centos:httpd", "-o", "-", "--root", str(V2_FIXTURE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        done = subprocess.run(
            [*regtool_cmd, "import", "-", "--config", str(config), "-f", "json", *import_args],
            stdin=export.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert export.stdout is not None
        export.stdout.close()
        assert export.wait(60) == 0
        return done.returncode, done.stdout, done.stderr

    code, out, err = piped()
    assert code == 0, err
    assert json.loads(out)["images"][0]["status"] == "written"
    assert [(r["repository"], r["tag"]) for r in ls_json("--config", str(config))] == [
        ("centos", "httpd")
    ]
    code, out, err = piped("--tag", "centos:httpd2")
    assert code == 0 and json.loads(out)["blobs_written"] == 0, err
    bigger = ls_json("--config", str(config))
    assert {r["tag"]: r["exclusive"] for r in bigger} == {"httpd": 0, "httpd2": 0}
    before = objects(rgw, bucket)
    code, out, err = piped("--tag", "centos:httpd2", "--no-overwrite")
    assert code == 0 and json.loads(out)["images"][0]["status"] == "present", err
    assert objects(rgw, bucket) == before  # no upload session or chunk left behind
