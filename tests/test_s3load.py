"""scripts/s3load.py against a real Ceph RGW: every file becomes the object the s3 driver reads.

The keys must be exactly distribution 2.8.2's (`<rootdirectory without its slash>/docker/...`):
checked key by key and byte by byte with boto3, and end to end by the reference registry,
whose garbage collector must find the same plan in the bucket as on the local tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.rgw import new_bucket, s3_client
from tests.support.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "s3load.py"
GO_REGISTRY = os.environ.get("REGTOOL_GO_REGISTRY", "docker-registry")
ELIGIBLE = re.compile(r"^blob eligible for deletion: (sha256:[0-9a-f]{64})$", re.M)
MARKED = re.compile(r"^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible", re.M)


s3load = load_script("s3load")


def all_objects(client, bucket: str) -> dict[str, bytes]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def local_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / "docker").rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize(
    ("rootdirectory", "key_prefix"),
    [("/some/root", "some/root/"), ("registry/", "registry/"), ("", ""), ("/", "")],
)
def test_every_file_becomes_an_object_with_the_s3_driver_key(
    rgw, v2_root, rootdirectory, key_prefix
):
    client = s3_client(rgw)
    bucket = f"load-{uuid.uuid4().hex[:16]}"  # load_tree creates it

    result = s3load.load_tree(rgw, bucket, v2_root, rootdirectory)

    expected = {key_prefix + rel: data for rel, data in local_files(v2_root).items()}
    assert len(expected) > 50
    assert all_objects(client, bucket) == expected
    assert result.objects == len(expected)
    assert result.bytes == sum(len(d) for d in expected.values())
    assert result.skipped == ()


def test_an_existing_bucket_is_used_and_links_are_skipped(rgw, v2_root):
    client = s3_client(rgw)
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="unrelated", Body=b"kept")
    blobs = v2_root / "docker" / "registry" / "v2" / "blobs"
    (blobs / "a-link").symlink_to(next(p for p in blobs.rglob("data")))
    (blobs / "dir-link").symlink_to(blobs / "sha256")

    result = s3load.load_tree(rgw, bucket, v2_root, "/r")

    objects = all_objects(client, bucket)
    assert objects.pop("unrelated") == b"kept"
    assert objects == {"r/" + rel: data for rel, data in local_files(v2_root).items()}
    assert result.skipped == (
        "docker/registry/v2/blobs/a-link",
        "docker/registry/v2/blobs/dir-link",
    )


def test_a_folder_without_a_registry_tree_is_refused_in_one_line(rgw, tmp_path):
    (tmp_path / "docker").mkdir()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--endpoint", rgw.endpoint, "--bucket", "never-made"]
        + ["--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stderr == f"s3load: {tmp_path} holds no docker/registry/v2 folder\n"
    assert "never-made" not in [b["Name"] for b in s3_client(rgw).list_buckets()["Buckets"]]


@pytest.mark.parametrize("rootdirectory", ["/a//b", "/a/./b", "../up"])
def test_a_rootdirectory_the_driver_would_not_normalise_is_refused(rgw, v2_root, rootdirectory):
    bucket = f"never-{uuid.uuid4().hex[:16]}"
    with pytest.raises(s3load.LoadError, match="has an empty, '.' or '..' component"):
        s3load.load_tree(rgw, bucket, v2_root, rootdirectory)
    assert bucket not in [b["Name"] for b in s3_client(rgw).list_buckets()["Buckets"]]


def reference_gc(config: Path) -> tuple[set[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # 2.8.2 panics on it
    proc = subprocess.run(
        [GO_REGISTRY, "garbage-collect", "--dry-run", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = MARKED.search(proc.stdout)
    assert summary, proc.stdout[-2000:]
    return set(ELIGIBLE.findall(proc.stdout)), summary.group(0)


def test_the_reference_registry_reads_the_bucket_through_the_written_config(rgw, v2_root, tmp_path):
    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, v2_root, "/prefix")
    s3_config = s3load.write_config(rgw, bucket, "/prefix", tmp_path / "s3.yml")
    local = tmp_path / "local.yml"
    local.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {v2_root}\n"
    )

    on_s3, s3_summary = reference_gc(s3_config)
    on_disk, disk_summary = reference_gc(local)

    assert on_s3 == on_disk
    assert s3_summary == disk_summary
    assert not s3_summary.startswith("0 blobs marked")
    assert oct(s3_config.stat().st_mode & 0o777) == "0o600"


def test_the_config_has_the_s3_section_distribution_reads(rgw):
    doc = s3load.config_doc(rgw, "bkt", "prefix/", port=5123)

    assert doc["storage"] == {
        "s3": {
            "accesskey": rgw.access_key,
            "secretkey": rgw.secret_key,
            "region": "us-east-1",
            "regionendpoint": rgw.endpoint,
            "bucket": "bkt",
            "secure": False,
            "v4auth": True,
            "rootdirectory": "/prefix",
        },
        "delete": {"enabled": True},
    }
    assert doc["http"] == {"addr": "127.0.0.1:5123"}
    assert re.fullmatch(r"127\.0\.0\.1:\d+", s3load.config_doc(rgw, "b", "/p")["http"]["addr"])
