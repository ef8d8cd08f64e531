"""The Ceph RGW of scripts/rgw.py is a real S3 store: data round trips, real SigV4 checks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.rgw import REPO_ROOT, new_bucket, rgwlib, running_cluster, s3_client

MiB = 1 << 20


def test_put_get_list_round_trip(rgw):
    s3 = s3_client(rgw)
    bucket = new_bucket(s3)
    keys = [f"docker/registry/v2/repositories/r{i}/_layers/link" for i in range(5)]
    keys += ["docker/registry/v2/blobs/sha256/ab/abcd/data"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    flat, token = [], None
    while True:  # pages of 2 keys: pagination really happens
        page = s3.list_objects_v2(
            Bucket=bucket, MaxKeys=2, **({"ContinuationToken": token} if token else {})
        )
        flat += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert flat == sorted((k, len(k)) for k in keys)
    folders = s3.list_objects_v2(
        Bucket=bucket, Prefix="docker/registry/v2/repositories/", Delimiter="/"
    )
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == [
        f"docker/registry/v2/repositories/r{i}/" for i in range(5)
    ]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="no/such/key")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_multipart_upload_round_trip(rgw):
    s3 = s3_client(rgw)
    bucket = new_bucket(s3)
    parts_data = [os.urandom(5 * MiB), os.urandom(MiB // 3)]  # 5 MiB minimum but for the last
    upload = s3.create_multipart_upload(Bucket=bucket, Key="blob")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in listed] == [upload]
    etags = [
        s3.upload_part(Bucket=bucket, Key="blob", UploadId=upload, PartNumber=n, Body=data)["ETag"]
        for n, data in enumerate(parts_data, start=1)
    ]
    parts = s3.list_parts(Bucket=bucket, Key="blob", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, MiB // 3)]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="blob",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )

    whole = b"".join(parts_data)
    body = s3.get_object(Bucket=bucket, Key="blob")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(whole).digest()
    ranged = s3.get_object(Bucket=bucket, Key="blob", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}")
    assert ranged["Body"].read() == whole[5 * MiB - 3 : 5 * MiB + 3]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_aborted_multipart_upload_is_gone(rgw):
    s3 = s3_client(rgw)
    bucket = new_bucket(s3)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="stale")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="stale", UploadId=upload, PartNumber=1, Body=b"x" * 100)
    s3.abort_multipart_upload(Bucket=bucket, Key="stale", UploadId=upload)

    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=bucket, Key="stale", UploadId=upload)
    # RGW 16 says NoSuchKey here where AWS says NoSuchUpload: a driver must go by the 404
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_wrong_secret_key_is_refused_with_403(rgw):
    bucket = new_bucket(s3_client(rgw))
    bad = s3_client(rgw, secret_key="not-the-secret-key-at-all-0000000000000")

    with pytest.raises(ClientError) as refused:
        bad.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as listing:
        bad.list_objects_v2(Bucket=bucket)
    assert listing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3_client(rgw).list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_unknown_access_key_is_refused_with_403(rgw):
    bad = s3_client(rgw, access_key="NOSUCHACCESSKEY00000")

    with pytest.raises(ClientError) as refused:
        bad.list_buckets()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_daemons_are_separate_processes_on_loopback(rgw):
    assert set(rgw.pids) == {"mon.a", "osd.0", "client.rgw.a"}
    assert len(set(rgw.pids.values())) == 3
    for pid in rgw.pids.values():
        assert rgwlib.alive(pid)
    assert rgw.endpoint.startswith("http://127.0.0.1:")


def _pgrep_dir(d: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and rgwlib.alive(int(proc.name)):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(d).encode() in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_cli_start_prints_keys_and_stop_leaves_no_daemon(tmp_path):
    d = tmp_path / "c"
    script = str(REPO_ROOT / "scripts" / "rgw.py")
    started = subprocess.run(
        [sys.executable, script, "start", "--dir", str(d)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert info["access_key"] == rgwlib.ACCESS_KEY
        assert len(_pgrep_dir(d)) == 3
        cluster = rgwlib.Cluster(
            d, info["endpoint"], info["access_key"], info["secret_key"], info["region"], {}
        )
        assert s3_client(cluster).list_buckets()["Buckets"] == []
    finally:
        stopped = subprocess.run(
            [sys.executable, script, "stop", "--dir", str(d)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert stopped.returncode == 0, stopped.stderr
    assert _pgrep_dir(d) == []


def test_cli_start_in_a_non_empty_folder_exits_3(tmp_path):
    (tmp_path / "something").write_text("x")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "rgw.py"), "start", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert done.stderr.strip() == f"rgw: {tmp_path} is not empty"
    assert (tmp_path / "something").read_text() == "x"


def test_three_osds_keep_serving_after_one_is_killed():
    with running_cluster(osds=3) as cluster:
        assert {n for n in cluster.pids if n.startswith("osd.")} == {"osd.0", "osd.1", "osd.2"}
        s3 = s3_client(cluster)
        bucket = new_bucket(s3)
        for i in range(10):
            s3.put_object(Bucket=bucket, Key=f"before/{i}", Body=bytes([i]) * 1000)

        rgwlib.kill(cluster.dir, "osd.1")

        assert not rgwlib.alive(cluster.pids["osd.1"])
        for i in range(10):
            body = s3.get_object(Bucket=bucket, Key=f"before/{i}")["Body"].read()
            assert body == bytes([i]) * 1000
        s3.put_object(Bucket=bucket, Key="after", Body=b"still writable")
        assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"still writable"
    assert not any(rgwlib.alive(pid) for pid in cluster.pids.values())
