"""serve's operations, with real processes: background gc beside skopeo pushes, upload
purging, /metrics read with prometheus-client's own parser, /healthz, the JSON access log,
and `regtool gc` beside a slow PATCH."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from regtool.layout.v2 import paths
from regtool.ops.gc import GcOptions
from regtool.server.accesslog import AccessLog
from regtool.server.auth import set_password
from regtool.server.maintenance import GcSchedule, Maintenance
from tests.server.apicalls import request
from tests.server.conftest import in_process, skopeo, subprocess_server
from tests.support.ocitar import gzip_layer, oci_dir_of, oci_image
from tests.support.v1tree import sha

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def wait_for(check: Callable[[], object], seconds: float = 40.0, what: str = "") -> object:
    """Poll `check` until it returns something true (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what}")


def json_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def push_blob(host: str, repo: str, data: bytes) -> int:
    status, _, _ = request(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={sha(data)}", data)
    return status


def put_manifest(host: str, repo: str, ref: str, raw: bytes) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    status, _, body = request(host, "PUT", f"/v2/{repo}/manifests/{ref}", raw, headers)
    return status, body


def metrics_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# -- background gc ------------------------------------------------------------------------------
def test_background_gc_beside_skopeo_pushes_keeps_images_whole_and_sweeps_a_deleted_one(
    tmp_path: Path,
) -> None:
    root = tmp_path / "reg"
    shared = gzip_layer("shared base", 150_000)
    images = []
    for i in range(5):
        layers = [gzip_layer(f"own layer {i}", 120_000), shared]
        folder = tmp_path / f"oci{i}"
        oci_dir_of(folder, "v1", layers)
        images.append((folder, layers, oci_image(layers)[1]))
    log = tmp_path / "serve.log"
    args = ("--gc-interval", "3s", "--grace", "5s", "--log-format", "json")
    with subprocess_server(root, *args, log=log) as served:
        for i, (folder, _, _) in enumerate(images):
            skopeo(
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{folder}:v1",
                f"docker://{served.host}/app{i}:v1",
            )
        wait_for(lambda: any(e.get("event") == "gc" for e in json_lines(log)), what="a gc run")
        for i, (_, _, manifest) in enumerate(images):
            out = tmp_path / f"back{i}"
            skopeo(
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                f"docker://{served.host}/app{i}:v1",
                f"oci:{out}:v1",
            )
            index = json.loads((out / "index.json").read_text())
            assert index["manifests"][0]["digest"] == sha(manifest)
            for blob in out.joinpath("blobs", "sha256").iterdir():  # every blob pulled whole
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
        doomed = images[0][1][0]
        status, _, _ = request(served.host, "DELETE", f"/v2/app0/manifests/{sha(images[0][2])}")
        assert status == 202
        wait_for(
            lambda: not (root / paths.blob_data(sha(doomed))).exists(),
            what="the deleted image's own layer swept",
        )
        assert (root / paths.blob_data(sha(shared))).exists()
        for i in range(1, 5):
            skopeo("inspect", "--tls-verify=false", f"docker://{served.host}/app{i}:v1")
    runs = [e for e in json_lines(log) if e.get("event") == "gc"]
    assert all(e["status"] == "done" and e["failed"] == 0 for e in runs)
    assert sum(e["deleted"] for e in runs) >= 2 and sum(e["freed_bytes"] for e in runs) > 120_000


def test_a_manifest_naming_a_blob_swept_a_moment_ago_is_refused_then_pushed_again(
    tmp_path: Path,
) -> None:
    """The swept layer's PUT answers MANIFEST_BLOB_UNKNOWN (the client uploads it again);
    once uploaded again, the image is complete and the next run keeps it."""
    layer = gzip_layer("reused layer", 50_000)
    config, manifest = oci_image([layer])
    with in_process(tmp_path / "reg") as served:
        ctx = served.server.app.ctx
        gc = Maintenance(
            ctx.store, ctx.activity, AccessLog(None), gc=GcSchedule(3600, GcOptions(grace=0))
        )
        assert push_blob(served.host, "app", config) == 201
        assert push_blob(served.host, "app", layer) == 201
        outcome = gc.run_gc()
        assert outcome is not None and {e.kind for e in outcome.deleted} >= {"blob", "link"}
        status, body = put_manifest(served.host, "app", "v1", manifest)
        assert status == 400 and b"MANIFEST_BLOB_UNKNOWN" in body
        assert push_blob(served.host, "app", config) == 201
        assert push_blob(served.host, "app", layer) == 201
        assert put_manifest(served.host, "app", "v1", manifest)[0] == 201
        gc.run_gc()
        assert request(served.host, "GET", f"/v2/app/blobs/{sha(layer)}")[0] == 200
        assert request(served.host, "GET", "/v2/app/manifests/v1")[0] == 200


def test_gc_interval_on_a_read_only_server_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "regtool",
            "serve",
            "--root",
            str(tmp_path / "r"),
            "--read-only",
            "--gc-interval",
            "1h",
            "--addr",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--gc-interval needs a writable v2 storage" in done.stderr


# -- upload purging -----------------------------------------------------------------------------
def old_session(root: Path, repo: str, started: str = "2020-01-01T00:00:00Z") -> Path:
    folder = root / paths.upload_dir(repo, str(uuid.uuid4()))
    folder.mkdir(parents=True)
    (folder / "startedat").write_text(started)
    (folder / "data").write_bytes(b"x" * 1000)
    return folder


def test_aged_upload_sessions_are_purged_at_start_up_and_fresh_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    (root / paths.V2).mkdir(parents=True)
    aged = old_session(root, "library/app")
    killed_import = old_session(root, "regtool-import")  # a folder of nothing but _uploads
    fresh = old_session(root, "library/app", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    log = tmp_path / "serve.log"
    with subprocess_server(
        root, "--log-format", "json", "--metrics-addr", "127.0.0.1:0", log=log
    ) as served:
        assert served.proc is not None and served.proc.stdout is not None
        metrics_url = served.proc.stdout.readline().strip().removeprefix("metrics on ")
        event = wait_for(
            lambda: [e for e in json_lines(log) if e.get("event") == "purge"], what="a purge"
        )[0]
        assert (
            event["purged"] == 2 and event["dryrun"] is False and event["bytes"] == 2 * (1000 + 20)
        )  # data and startedat
        assert not aged.exists() and not killed_import.exists()
        assert not (root / paths.repository("regtool-import")).exists()
        assert fresh.exists()
        host = metrics_url.split("//")[1].split("/")[0]
        status, _, body = request(host, "GET", "/metrics")
        assert metrics_of(body.decode())[("regtool_uploads_purged_total", ())] == 2.0


def test_upload_purging_follows_the_config_and_its_dry_run(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    (root / paths.V2).mkdir(parents=True)
    aged = old_session(root, "app")
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        "  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 1h\n"
        "      interval: 24h\n      dryrun: true\n"
    )
    log = tmp_path / "serve.log"
    with subprocess_server(None, config=config, log=log):
        wait_for(lambda: "purge: would remove 1 upload sessions" in log.read_text(), what="purge")
    assert aged.exists()


def test_upload_purging_can_be_turned_off(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    (root / paths.V2).mkdir(parents=True)
    aged = old_session(root, "app")
    log = tmp_path / "serve.log"
    with subprocess_server(root, "--no-upload-purging", log=log) as served:
        assert request(served.host, "GET", "/v2/")[0] == 200
    assert aged.exists() and "purge" not in log.read_text()


# -- metrics, health, logs ----------------------------------------------------------------------
def test_metrics_count_what_the_test_did_behind_the_api_auth(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "alice", "wonderland")
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
    blob = os.urandom(30_000)
    log = tmp_path / "serve.log"
    with subprocess_server(
        tmp_path / "reg", "--htpasswd", str(htpasswd), "--log-format", "json", log=log
    ) as served:
        assert request(served.host, "GET", "/metrics")[0] == 401
        for _ in range(3):
            assert request(served.host, "GET", "/v2/", headers=auth)[0] == 200
        status, headers, _ = request(
            served.host, "POST", f"/v2/app/blobs/uploads/?digest={sha(blob)}", blob, auth
        )
        assert status == 201
        status, headers, _ = request(served.host, "POST", "/v2/app/blobs/uploads/", b"", auth)
        assert status == 202  # a session left open
        started = time.perf_counter()
        status, headers, body = request(served.host, "GET", "/metrics", headers=auth)
        took = time.perf_counter() - started
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert took < 0.5
    found = metrics_of(body.decode())
    get_base = (
        "regtool_http_requests_total",
        (("method", "GET"), ("route", "base"), ("status", "200")),
    )
    assert found[get_base] == 3.0
    posted = (
        "regtool_http_requests_total",
        (("method", "POST"), ("route", "uploads"), ("status", "201")),
    )
    assert found[posted] == 1.0
    assert (
        found[
            (
                "regtool_http_requests_total",
                (("method", "GET"), ("route", "metrics"), ("status", "401")),
            )
        ]
        == 1.0
    )
    assert found[("regtool_http_bytes_received_total", ())] == 30_000.0
    assert found[("regtool_http_bytes_sent_total", ())] > 0
    assert found[("regtool_uploads_in_progress", ())] == 1.0
    assert found[("regtool_http_request_duration_seconds_count", (("route", "base"),))] == 3.0
    assert found[("regtool_gc_runs_total", ())] == 0.0


def test_the_json_log_has_one_parsable_object_per_request_and_no_password(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "alice", "s3cret-pass")
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret-pass").decode()}
    blob = b"logged blob"
    log = tmp_path / "serve.log"
    with subprocess_server(
        tmp_path / "reg",
        "--htpasswd",
        str(htpasswd),
        "--log-format",
        "json",
        "--no-upload-purging",
        log=log,
    ) as served:
        request(served.host, "GET", "/v2/")
        request(served.host, "POST", f"/v2/app/blobs/uploads/?digest={sha(blob)}", blob, auth)
        _, headers, _ = request(served.host, "POST", "/v2/app/blobs/uploads/", b"", auth)
        upload = headers["Docker-Upload-UUID"]
        request(
            served.host,
            "PATCH",
            f"/v2/app/blobs/uploads/{upload}",
            b"abc",
            {**auth, "Content-Type": "application/octet-stream"},
        )
    text = log.read_text()
    assert "s3cret-pass" not in text and "Basic " not in text
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    events = [r for r in records if "event" in r]
    created = str(tmp_path / "reg")
    assert [e.get("created") for e in events if e["event"] == "storage"] == [created]
    lines = [r for r in records if "event" not in r]
    assert len(lines) == 4
    anonymous, monolithic, opened, patched = lines
    assert anonymous["user"] is None and anonymous["status"] == 401
    assert anonymous["route"] == "base" and anonymous["method"] == "GET"
    assert monolithic["user"] == "alice" and monolithic["status"] == 201
    assert monolithic["digest"] == sha(blob) and monolithic["received"] == len(blob)
    assert opened["upload"] == upload and patched["upload"] == upload
    assert patched["route"] == "upload" and patched["status"] == 202
    for line in lines:
        assert set(line) >= {
            "time",
            "remote",
            "user",
            "method",
            "path",
            "route",
            "status",
            "bytes",
            "duration_ms",
        }
        assert isinstance(line["status"], int) and line["time"].endswith("Z")
        assert line["remote"] == "127.0.0.1"


def test_healthz_answers_without_credentials_and_503_when_storage_cannot_be_written(
    tmp_path: Path,
) -> None:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "alice", "wonderland")
    root = tmp_path / "reg"
    with subprocess_server(root, "--htpasswd", str(htpasswd)) as served:
        status, headers, body = request(served.host, "GET", "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert not any((root / ".regtool" / "healthz").iterdir())  # the probe cleans up
    broken = tmp_path / "broken"
    (broken / paths.V2).mkdir(parents=True)
    (broken / ".regtool").write_text("a file where the probe writes")
    with subprocess_server(broken) as served:
        status, _, body = request(served.host, "GET", "/healthz")
        assert status == 503
        doc = json.loads(body)
        assert doc["status"] == "unavailable" and "not writable" in doc["reason"]
        assert request(served.host, "GET", "/v2/")[0] == 200  # the API still answers


# -- gc beside a slow PATCH -----------------------------------------------------------------------
def test_gc_beside_a_slow_patch_needs_no_wait_and_the_upload_completes(tmp_path: Path) -> None:
    """A PATCH streaming in holds no storage lock: an external gc runs at once, and the
    session survives it (younger than --upload-age)."""
    root = tmp_path / "reg"
    orphan = b"an orphan for the external gc"
    blob = os.urandom(20_000)
    with subprocess_server(root) as served:
        assert push_blob(served.host, "other", orphan) == 201
        _, headers, _ = request(served.host, "POST", "/v2/app/blobs/uploads/")
        location = headers["Location"]
        host, port = served.host.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"PATCH {location} HTTP/1.1\r\nHost: {served.host}\r\n"
                f"Content-Type: application/octet-stream\r\n"
                f"Content-Length: {len(blob)}\r\n\r\n".encode()
                + blob[:5000]
            )
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "regtool",
                    "gc",
                    "--root",
                    str(root),
                    "--yes",
                    "--grace",
                    "0",
                    "--wait",
                    "10s",
                ],
                capture_output=True,
                text=True,
                env=ENV,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert not (root / paths.blob_data(sha(orphan))).exists()
            sock.sendall(blob[5000:])
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 202")
        status, _, _ = request(served.host, "PUT", f"{location}?digest={sha(blob)}")
        assert status == 201
        assert request(served.host, "GET", f"/v2/app/blobs/{sha(blob)}")[2] == blob


def test_the_storage_gauges_come_from_the_background_summary(tmp_path: Path) -> None:
    """regtool_storage_* appear once the web page's summary is computed, with its figures
    (those of `ls`), and never need a walk per scrape."""
    from tests.server.conftest import FIXTURE_V2, copy_fixture

    root = copy_fixture(FIXTURE_V2, tmp_path / "reg")
    with subprocess_server(root) as served:
        deadline = time.monotonic() + 30
        found: dict = {}
        while time.monotonic() < deadline:
            found = metrics_of(request(served.host, "GET", "/metrics")[2].decode())
            if ("regtool_storage_tags", ()) in found:
                break
            time.sleep(0.2)
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "regtool", "ls", "--root", str(root), "-f", "json"],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        ).stdout
    )
    assert found[("regtool_storage_tags", ())] == len(listed) == 7
    assert found[("regtool_storage_repositories", ())] == 6
    assert found[("regtool_storage_bytes", ())] >= sum(
        row["size"] for row in listed if row["repository"] == "sshd"
    )


def test_maintenance_threads_run_at_a_lower_priority_than_requests() -> None:
    """gc, purge and the summary lower their own thread's priority (and that of the gc
    workers they fork): a background gc then costs the manifest GET rate about 10%
    (scripts/bench_serve_gc.py), not 21%."""
    import threading

    from regtool.server.maintenance import BACKGROUND_NICE, background

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def run() -> None:
        background()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [min(19, mine + BACKGROUND_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
