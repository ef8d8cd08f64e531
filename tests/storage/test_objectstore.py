"""The S3 driver against the real Ceph RGW of scripts/rgw.py (a fresh bucket per test)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regtool.storage.driver import (
    Entry,
    InvalidPath,
    PathNotFound,
    StorageError,
    TooLarge,
)
from regtool.storage.objectstore import ObjectStoreDriver, S3Settings
from regtool.storage.s3config import RETRIES
from tests.support.relay import Relay
from tests.support.rgw import REPO_ROOT, new_bucket, s3_client

MiB = 1 << 20
V2 = "docker/registry/v2"
BLOB = f"{V2}/blobs/sha256/ab/abcd/data"


def settings(rgw, bucket: str, **changes) -> S3Settings:
    values = {
        "bucket": bucket,
        "region": rgw.region,
        "endpoint": rgw.endpoint,
        "access_key": rgw.access_key,
        "secret_key": rgw.secret_key,
        "secure": False,
    } | changes
    return S3Settings(**values)


@pytest.fixture
def s3(rgw):
    return s3_client(rgw)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3)


@pytest.fixture
def driver(rgw, bucket):
    return ObjectStoreDriver(settings(rgw, bucket), readonly=False)


def keys_of(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_put_get_stat_list_walk_round_trip(driver):
    driver.put(f"{V2}/repositories/r/_layers/link", b"sha256:ab")
    driver.put(BLOB, b"blob bytes")
    driver.put(f"{V2}/repositories/empty", b"")

    assert driver.get(BLOB) == b"blob bytes"
    assert driver.get(f"{V2}/repositories/empty") == b""
    info = driver.stat(BLOB)
    assert (info.path, info.size, info.is_dir) == (BLOB, 10, False)
    assert abs(info.mtime - time.time()) < 600
    assert driver.list(f"{V2}/repositories") == [Entry("empty", False), Entry("r", True)]
    assert driver.list(V2) == [Entry("blobs", True), Entry("repositories", True)]
    assert driver.list("") == [Entry("docker", True)]
    assert driver.list(f"{V2}/nothing") == []
    walked = list(driver.walk(V2))
    assert [(f.path, f.size, f.is_dir) for f in walked] == [
        (BLOB, 10, False),
        (f"{V2}/repositories/empty", 0, False),
        (f"{V2}/repositories/r/_layers/link", 9, False),
    ]
    assert all(abs(f.mtime - info.mtime) < 60 for f in walked)
    assert list(driver.walk(f"{V2}/nothing")) == []


def test_a_folder_exists_when_keys_are_below_it(driver):
    driver.put(BLOB, b"x")

    assert driver.exists(BLOB)
    assert driver.exists(f"{V2}/blobs/sha256")
    assert driver.stat(f"{V2}/blobs").is_dir
    assert not driver.exists(f"{V2}/blobs/sha2")  # a key prefix, not a folder
    assert not driver.exists(f"{BLOB}/below")
    with pytest.raises(PathNotFound):
        driver.stat(f"{V2}/nothing")


def test_delete_removes_an_object_or_everything_below_a_prefix(driver, s3, bucket):
    for i in range(5):
        driver.put(f"{V2}/repositories/r/_layers/sha256/{i}/link", b"x")
    driver.put(f"{V2}/repositories/r2/link", b"x")
    driver.put(f"{V2}/repositories/r/link", b"keep: not below the prefix r/_layers")

    driver.delete(f"{V2}/repositories/r/_layers")
    driver.delete(f"{V2}/repositories/r2/link")
    driver.delete(f"{V2}/repositories/missing")  # missing: not an error

    assert keys_of(s3, bucket) == [f"{V2}/repositories/r/link"]
    driver.remove_empty_parents(f"{V2}/repositories/r/_layers", V2)  # no-op
    with pytest.raises(InvalidPath):
        driver.delete("")


def test_delete_of_more_keys_than_one_page(driver, s3, bucket):
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: driver.put(f"many/{i:05d}", b""), range(1050)))
    driver.put("many2", b"not below many/")

    driver.delete("many")

    assert keys_of(s3, bucket) == ["many2"]


def test_move_copies_server_side_then_deletes(driver, s3, bucket):
    driver.put("a/src", b"moving")

    driver.move("a/src", "b/dst")

    assert keys_of(s3, bucket) == ["b/dst"]
    assert driver.get("b/dst") == b"moving"
    with pytest.raises(PathNotFound) as missing:
        driver.move("a/src", "c/dst")
    assert missing.value.path == "a/src"


def test_rootdirectory_prefixes_every_key(rgw, s3, bucket):
    driver = ObjectStoreDriver(settings(rgw, bucket, rootdirectory="/reg/root"), readonly=False)
    s3.put_object(Bucket=bucket, Key="docker/outside", Body=b"not ours")

    driver.put(BLOB, b"data")
    driver.move(BLOB, f"{BLOB}2")

    assert keys_of(s3, bucket) == ["docker/outside", f"reg/root/{BLOB}2"]
    assert driver.list("") == [Entry("docker", True)]
    assert [f.path for f in driver.walk("")] == [f"{BLOB}2"]
    assert [f.path for f in driver.walk("docker")] == [f"{BLOB}2"]
    driver.delete("docker")
    assert keys_of(s3, bucket) == ["docker/outside"]


def test_get_over_the_limit_is_too_large_without_reading_it_whole(driver, s3, bucket):
    driver.put("big", b"x" * (2 * MiB))
    driver.put("small", b"12345")

    with pytest.raises(TooLarge) as refused:
        driver.get("big", limit=100)
    assert refused.value.limit == 100
    assert driver.get("small", limit=5) == b"12345"
    with pytest.raises(TooLarge):
        driver.get("small", limit=4)
    with pytest.raises(PathNotFound):
        driver.get("missing", limit=4)


def test_get_with_a_limit_transfers_at_most_limit_plus_one_bytes(rgw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(4 * MiB))
    with Relay(rgw.endpoint) as proxy:
        driver = ObjectStoreDriver(settings(rgw, bucket, endpoint=proxy.endpoint))
        with pytest.raises(TooLarge):
            driver.get("big", limit=1000)
        found = driver.get_many(["big"], limit=1000)
    assert isinstance(found["big"], TooLarge)
    # two answers of headers and at most 1001 bytes each; a client that has seen enough
    # (the size in Content-Range) may close before the rest of an answer passed the relay
    assert 500 < proxy.received < 20_000


def test_open_streams_from_an_offset(driver):
    data = os.urandom(20 * MiB + 17)  # more than two 8 MiB ranges
    driver.put("blob", data)

    with driver.open("blob") as whole:
        digest = hashlib.sha256()
        while chunk := whole.read(MiB):
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()
    with driver.open("blob", 9 * MiB + 5) as part:
        assert part.read(10) == data[9 * MiB + 5 : 9 * MiB + 15]
        part.seek(3)
        assert part.read(4) == data[3:7]
        assert part.tell() == 7
    with pytest.raises(PathNotFound):
        driver.open("missing")


def test_put_stream_of_12_mib_is_one_multipart_upload_of_5_mib_parts(rgw, s3, bucket):
    driver = ObjectStoreDriver(settings(rgw, bucket, chunksize=5 * MiB), readonly=False)
    data = os.urandom(12 * MiB)

    written = driver.put_stream("blob", (data[i : i + MiB] for i in range(0, len(data), MiB)))

    assert written == 12 * MiB
    head = s3.head_object(Bucket=bucket, Key="blob")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].strip('"').endswith("-3")
    body = s3.get_object(Bucket=bucket, Key="blob")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_put_stream_of_one_part_is_a_single_put(driver, s3, bucket):
    assert driver.put_stream("small", [b"ab", b"cd"]) == 4

    assert "-" not in s3.head_object(Bucket=bucket, Key="small")["ETag"]
    assert driver.get("small") == b"abcd"


def test_a_failing_stream_leaves_no_object_and_no_upload(rgw, s3, bucket):
    driver = ObjectStoreDriver(settings(rgw, bucket, chunksize=5 * MiB), readonly=False)

    def chunks():
        for _ in range(7):
            yield os.urandom(MiB)
        raise ValueError("the source broke")

    with pytest.raises(ValueError, match="the source broke"):
        driver.put_stream("blob", chunks())

    assert keys_of(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_get_many_reads_concurrently_and_reports_each_missing_key(driver):
    paths = [f"links/{i:04d}" for i in range(150)]
    for path in paths:
        driver.put(path, path.encode())
    driver.put("links/large", b"y" * 100)

    found = driver.get_many([*paths, "links/missing", "links/large"], limit=50)

    assert {p: found[p] for p in paths} == {p: p.encode() for p in paths}
    assert isinstance(found["links/missing"], PathNotFound)
    assert isinstance(found["links/large"], TooLarge)
    assert driver.get_many([]) == {}


def test_readonly_driver_refuses_every_write(rgw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"there")
    driver = ObjectStoreDriver(settings(rgw, bucket))

    for write in (
        lambda: driver.put("k", b"x"),
        lambda: driver.put_stream("k", [b"x"]),
        lambda: driver.delete("k"),
        lambda: driver.move("k", "k2"),
        lambda: driver.open_append("k"),
        lambda: driver.hold("k"),
    ):
        with pytest.raises(StorageError) as refused:
            write()
        assert refused.value.message == "driver is read-only"
    assert keys_of(s3, bucket) == ["k"]
    assert driver.get("k") == b"there"


def test_uploads_are_not_supported_yet(driver):
    driver.put("k", b"x")
    for call in (lambda: driver.open_append("k"), lambda: driver.hold("k")):
        with pytest.raises(StorageError) as refused:
            call()
        assert refused.value.message == "not supported on object storage yet"


def test_wrong_secret_key_is_access_denied_in_one_line(rgw, bucket):
    driver = ObjectStoreDriver(settings(rgw, bucket, secret_key="not-the-secret-key-00000000"))

    with pytest.raises(StorageError) as refused:
        driver.check()
    assert str(refused.value) == (
        f"s3://{bucket}: access denied (SignatureDoesNotMatch): check accesskey/secretkey"
    )
    with pytest.raises(StorageError) as reading:
        driver.get("k")
    assert reading.value.message.startswith("access denied")
    assert "\n" not in reading.value.message


def test_missing_bucket_is_named(rgw):
    driver = ObjectStoreDriver(settings(rgw, "no-such-bucket-here", rootdirectory="/p"))

    with pytest.raises(StorageError) as missing:
        driver.check()
    assert (
        str(missing.value)
        == "s3://no-such-bucket-here/p: bucket 'no-such-bucket-here' does not exist"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_fails_fast_in_one_line(rgw):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    driver = ObjectStoreDriver(settings(rgw, "any", endpoint=endpoint))

    started = time.monotonic()
    with pytest.raises(StorageError) as unreachable:
        driver.check()
    found = driver.get_many(["a"])["a"]
    assert time.monotonic() - started < 15
    assert unreachable.value.message == f"cannot reach {endpoint}: connection refused"
    assert isinstance(found, StorageError)
    assert found.message == f"cannot reach {endpoint}: connection refused"


class SlowDown(BaseHTTPRequestHandler):
    """An S3 endpoint that always answers 503 SlowDown (and counts the requests)."""

    requests = 0

    def _answer(self) -> None:
        type(self).requests += 1
        body = b"<?xml version='1.0'?><Error><Code>SlowDown</Code></Error>"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


def test_503_slowdown_is_retried_a_bounded_number_of_times():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowDown)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        driver = ObjectStoreDriver(
            S3Settings("b", endpoint=endpoint, access_key="a", secret_key="s", secure=False)
        )
        started = time.monotonic()
        with pytest.raises(StorageError) as failed:
            driver.get("k")
        assert time.monotonic() - started < 15
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert failed.value.message == f"{endpoint} answered 503 SlowDown"
    assert SlowDown.requests == 1 + RETRIES


def test_settings_that_cannot_be_honoured_are_refused_at_start(rgw):
    with pytest.raises(StorageError, match="keyid is set but encrypt is false"):
        ObjectStoreDriver(settings(rgw, "b", keyid="k1"))
    with pytest.raises(StorageError, match="storageclass 'GLACIER' is not supported"):
        ObjectStoreDriver(settings(rgw, "b", storageclass="GLACIER"))
    with pytest.raises(StorageError, match="chunksize 1024 is below"):
        ObjectStoreDriver(settings(rgw, "b", chunksize=1024))


def test_storage_class_reaches_the_store(rgw, s3, bucket):
    standard = ObjectStoreDriver(settings(rgw, bucket, storageclass="STANDARD"), readonly=False)
    standard.put("k", b"x")
    assert standard.get("k") == b"x"
    # RGW has no REDUCED_REDUNDANCY placement: its refusal shows the class is sent
    reduced = ObjectStoreDriver(
        settings(rgw, bucket, storageclass="REDUCED_REDUNDANCY"), readonly=False
    )
    with pytest.raises(StorageError) as refused:
        reduced.put("k2", b"x")
    assert refused.value.message == "S3 answered 400 InvalidArgument"


def test_regtool_imports_without_obstore():
    code = (
        "import sys; sys.modules['obstore'] = None\n"
        "import regtool.storage.objectstore as o\n"
        "from regtool.storage.driver import StorageError\n"
        "try:\n"
        "    o.ObjectStoreDriver(o.S3Settings('b'))\n"
        "except StorageError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "s3://b: S3 storage needs obstore: pip install 'regtool[s3]'"


@pytest.mark.parametrize(
    ("changes", "headers"),
    [
        ({"encrypt": True}, [b"x-amz-server-side-encryption: AES256"]),
        (
            {"encrypt": True, "keyid": "key-1"},
            [
                b"x-amz-server-side-encryption: aws:kms",
                b"x-amz-server-side-encryption-aws-kms-key-id: key-1",
            ],
        ),
    ],
    ids=["sse-s3", "sse-kms"],
)
def test_encryption_settings_are_sent_with_every_put(rgw, bucket, changes, headers):
    with Relay(rgw.endpoint) as proxy:
        driver = ObjectStoreDriver(
            settings(rgw, bucket, endpoint=proxy.endpoint, **changes), readonly=False
        )
        try:
            driver.put("k", b"x")
        except StorageError as exc:  # RGW without a KMS (or over http) may refuse
            assert "\n" not in exc.message
    sent = bytes(proxy.sent).lower()
    assert sent.startswith(b"put /")
    for header in headers:
        assert header.lower() in sent


EXIT_AFTER_GET_MANY = """
import sys
from regtool.storage.objectstore import ObjectStoreDriver, S3Settings
driver = ObjectStoreDriver(S3Settings(bucket=sys.argv[1], region=sys.argv[2], endpoint=sys.argv[3],
    access_key=sys.argv[4], secret_key=sys.argv[5], secure=False), readonly=True)
for _ in range(4):
    found = driver.get_many([f"links/{i:04d}" for i in range(40)], limit=50)
    assert all(isinstance(v, bytes) for v in found.values())
"""


def test_a_process_exits_cleanly_after_batched_reads(driver, rgw, bucket):
    """obstore's async reads could call back into an interpreter that was shutting down:
    about 1 exit in 6 aborted (SIGABRT, no message). Batched reads now block on threads."""
    for i in range(40):
        driver.put(f"links/{i:04d}", b"x")
    args = [bucket, rgw.region, rgw.endpoint, rgw.access_key, rgw.secret_key]
    codes = [
        subprocess.run(
            [sys.executable, "-c", EXIT_AFTER_GET_MANY, *args],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            timeout=60,
            check=False,
        ).returncode
        for _ in range(15)
    ]
    assert codes == [0] * 15
