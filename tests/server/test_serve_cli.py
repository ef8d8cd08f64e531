"""`regtool serve` as users run it: defaults, --config, TLS, htpasswd, v1 roots, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from regtool.layout.v2 import paths
from regtool.server import tls
from regtool.server.auth import set_password
from tests.server.conftest import FIXTURE_V1, copy_fixture, skopeo, subprocess_server
from tests.support.refregistry import http_json, http_request

V1_EXPECTED = json.loads((FIXTURE_V1 / "EXPECTED.json").read_text())


def test_missing_root_becomes_an_empty_v2_tree_and_first_line_is_the_url(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with subprocess_server(root) as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert http_json(f"{served.url}/v2/_catalog")[1] == {"repositories": []}
    assert (root / paths.V2).is_dir()


def test_sigterm_stops_cleanly_with_exit_0(tmp_path: Path) -> None:
    with subprocess_server(tmp_path / "registry") as served:
        assert served.proc is not None
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=10) == 0
    assert not list((tmp_path / "registry").rglob("*.tmp"))


def test_access_log_has_one_line_per_request(tmp_path: Path) -> None:
    with subprocess_server(tmp_path / "registry") as served:
        http_json(f"{served.url}/v2/")
        http_json(f"{served.url}/v2/nope/tags/list")
    assert served.log is not None
    lines = [line for line in served.log.read_text().splitlines() if '"GET /v2/' in line]
    assert len(lines) == 2 and " 200 " in lines[0] and " 404 " in lines[1]


def test_bad_addr_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "serve", "--root", str(tmp_path), "--addr", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("Error: --addr 'nope' is not HOST:PORT")


def test_port_in_use_is_an_operational_error(tmp_path: Path) -> None:
    with subprocess_server(tmp_path / "registry") as served:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "regtool",
                "serve",
                "--root",
                str(tmp_path / "other"),
                "--addr",
                served.url.removeprefix("http://"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 3
    assert done.stderr.startswith(f"Error: cannot listen on {served.url.removeprefix('http://')}")
    assert "Traceback" not in done.stderr


def test_config_file_sets_root_and_read_only(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: reg\n"
        "  maintenance:\n    readonly:\n      enabled: true\n"
        "http:\n  addr: 127.0.0.1:0\n"
    )
    (tmp_path / "reg").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "regtool", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("listening on ")
        status, body, _ = http_request("POST", f"{url}/v2/x/blobs/uploads/", data=b"")
        assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert list((tmp_path / "reg").iterdir()) == []  # read-only: nothing written


def test_tls_auto_serves_https_that_skopeo_trusts_with_only_the_ca(
    v2_copy: Path, tmp_path: Path
) -> None:
    with subprocess_server(v2_copy, "--tls", "auto") as served:
        assert served.url.startswith("https://127.0.0.1:")
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes((tmp_path / "v2-tls" / "ca.crt").read_bytes())
        out = skopeo("inspect", "--cert-dir", str(certs), f"docker://{served.host}/busybox:latest")
        assert json.loads(out)["Name"].endswith("/busybox")
        refused = subprocess.run(
            ["skopeo", "inspect", f"docker://{served.host}/busybox:latest"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode != 0 and "certificate" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "v2-tls").iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]


def test_htpasswd_requires_credentials_on_every_endpoint(v2_copy: Path, tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "s3cret")
    with subprocess_server(v2_copy, "--htpasswd", str(users)) as served:
        status, _, headers = http_json(f"{served.url}/v2/_catalog")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="regtool"'
        assert http_json(f"{served.url}/v1/_ping")[0] == 401
        skopeo(
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
            f"docker://{served.host}/busybox:latest",
        )
        wrong = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--tls-verify=false",
                "--creds",
                "alice:wrong",
                f"docker://{served.host}/busybox:latest",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower()
    assert served.log is not None and " - alice [" in served.log.read_text()


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    return copy_fixture(FIXTURE_V1, tmp_path / "v1")


def test_v1_root_serves_legacy_reads_and_refuses_v2_writes(v1_copy: Path) -> None:
    first = V1_EXPECTED["tags"][0]
    name, tag, image = first["repository"], first["tag"], first["image"]
    with subprocess_server(v1_copy) as served:
        assert http_json(f"{served.url}/v1/_ping")[0] == 200
        status, found, _ = http_json(f"{served.url}/v1/search?q=busybox")
        assert status == 200 and {"description": "", "name": name} in found["results"]
        assert http_json(f"{served.url}/v1/repositories/{name}/tags")[1][tag] == image
        status, ancestry, _ = http_request("GET", f"{served.url}/v1/images/{image}/ancestry")
        assert json.loads(ancestry) == first["ancestry"]
        status, layer, _ = http_request("GET", f"{served.url}/v1/images/{image}/layer")
        assert status == 200 and len(layer) == (v1_copy / "images" / image / "layer").stat().st_size
        status, body, _ = http_request(
            "PUT", f"{served.url}/v2/busybox/manifests/latest", data=b"{}"
        )
        error = json.loads(body)["errors"][0]
        assert status == 405 and error["code"] == "UNSUPPORTED"
        assert "regtool migrate" in error["message"]


def test_serve_refuses_a_folder_that_is_no_registry(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "regtool",
            "serve",
            "--root",
            str(tmp_path),
            "--addr",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=30,
    )
    assert done.returncode == 3 and done.stderr.startswith("Error: ")
    assert time.monotonic() - started < 30


def test_own_certificate_and_key_serve_https(tmp_path: Path) -> None:
    files = tls.ensure_auto_tls(tmp_path / "own", ["127.0.0.1"])
    args = ("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key))
    with subprocess_server(tmp_path / "registry", *args) as served:
        assert served.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        with urllib.request.urlopen(f"{served.url}/v2/", context=context) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_tls_cert_without_key_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "serve", "--root", str(tmp_path), "--tls-cert", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "--tls-key" in done.stderr


# -- configuration serve cannot honour; limits (issue 8) ------------------------------------


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regtool", "serve", "--addr", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("scheme", ["token", "silly"])
def test_config_with_auth_other_than_htpasswd_refuses_to_start(tmp_path: Path, scheme: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: reg\n"
        f"auth:\n  {scheme}:\n    realm: https://auth.example/token\n    service: registry\n"
    )
    done = run_serve("--config", str(config))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: config {config}: auth.{scheme}: not supported")
    assert "listening" not in done.stdout and "Traceback" not in done.stderr


def test_config_with_tls_client_cas_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: reg\n"
        "http:\n  tls:\n    certificate: s.crt\n    key: s.key\n    clientcas: [ca.pem]\n"
    )
    done = run_serve("--config", str(config))
    assert done.returncode == 2
    assert done.stderr.startswith(f"Error: config {config}: http.tls.clientcas: not supported")


@pytest.mark.parametrize(("delete", "status"), [("", 405), ("  delete:\n    enabled: true\n", 202)])
def test_with_config_deletes_follow_storage_delete_enabled(
    v2_copy: Path, tmp_path: Path, delete: str, status: int
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {v2_copy}\n{delete}"
    )
    with subprocess_server(v2_copy, "--config", str(config)) as served:
        code, body, _ = http_request("DELETE", f"{served.url}/v2/busybox/manifests/latest")
    assert code == status
    if status == 405:
        assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"


def test_without_config_deletes_stay_allowed(v2_copy: Path) -> None:
    with subprocess_server(v2_copy) as served:
        code, _, _ = http_request("DELETE", f"{served.url}/v2/busybox/manifests/latest")
    assert code == 202


def test_config_headers_are_sent_and_unused_sections_named_in_one_warning(
    v2_copy: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {v2_copy}\n"
        "http:\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
        "health:\n  storagedriver:\n    enabled: true\n"
    )
    with subprocess_server(v2_copy, "--config", str(config)) as served:
        status, _, headers = http_json(f"{served.url}/v2/")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
    assert served.log is not None
    assert (
        f"warning: config {config}: ignoring health (not used by serve)" in served.log.read_text()
    )


def test_max_connections_and_idle_timeout_flags_limit_connections(tmp_path: Path) -> None:
    get = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    args = ("--max-connections", "1", "--idle-timeout", "0.5")
    with subprocess_server(tmp_path / "registry", *args) as served:
        address, port = served.host.rsplit(":", 1)
        with socket.create_connection((address, int(port)), timeout=10) as first:
            first.sendall(get)
            assert first.recv(65536).startswith(b"HTTP/1.1 200 OK")
            with socket.create_connection((address, int(port)), timeout=10) as second:
                second.sendall(get)  # waits: the one slot is taken by the idle first
                assert second.recv(65536).startswith(b"HTTP/1.1 200 OK")
                first.settimeout(0.1)  # served only once the first was closed for idling
                assert first.recv(65536) == b""


def _first_lines(args: list[str], lines: int, timeout: float = 20) -> tuple[list[str], str]:
    """The first `lines` lines a `regtool serve` prints on stdout, and its stderr, then stop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "regtool", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    try:
        got = [proc.stdout.readline().rstrip("\n") for _ in range(lines)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=timeout)
    return got, err


def test_a_new_user_is_told_the_root_was_created_and_how_to_log_in(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "ci", "secret")
    root = tmp_path / "typo"
    args = ["--root", str(root), "--addr", "127.0.0.1:0", "--htpasswd", str(htpasswd)]
    lines, err = _first_lines(args, 3)
    assert lines[0].startswith("listening on http://127.0.0.1:")
    hostport = lines[0].removeprefix("listening on http://")
    assert lines[1] == f"log in (htpasswd): podman login {hostport}   (docker login {hostport})"
    assert lines[2] == f"  curl -u ci http://{hostport}/v2/_catalog"
    assert f"created new empty storage at {root}\n" in err
    assert "plain HTTP" not in err  # loopback: nothing travels over a network


def test_plain_http_on_a_non_loopback_address_warns_and_an_existing_root_is_not_new(
    v2_copy: Path,
) -> None:
    _, err = _first_lines(["--root", str(v2_copy), "--addr", "0.0.0.0:0"], 1)
    assert "warning: plain HTTP on " in err and "--tls auto" in err
    assert "created new empty storage" not in err
