"""`regtool serve --tls auto [--htpasswd FILE]` end to end with skopeo over HTTPS.

skopeo trusts only the CA that `--tls auto` generated (`--dest-cert-dir` holding ca.crt,
never `--tls-verify=false` towards regtool). The source image comes from the v2 fixture,
served by the reference registry.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.refregistry import reference_registry

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v2"
EXPECTED = json.loads((FIXTURE / "EXPECTED.json").read_text())
IMAGE = "busybox:latest"
DIGEST = EXPECTED["manifests"][IMAGE]["digest"]
LISTENING = re.compile(r"listening on (https?)://(\S+:\d+)")


@dataclass
class Served:
    url: str
    host_port: str
    lines: list[str]
    proc: subprocess.Popen[str]

    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def regtool_serve(*args: str, ready_text: str = "") -> Iterator[Served]:
    """Run `regtool serve ARGS`; yield once it listens and has printed `ready_text`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "regtool", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    fresh: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            fresh.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        match = None
        while match is None or ready_text not in "\n".join(lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0 and proc.poll() is None, "\n".join(lines)
            try:
                line = fresh.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if match is None:
                match = LISTENING.search(line)
                assert match, f"first line is not 'listening on ...': {line!r}"
        yield Served(f"{match[1]}://{match[2]}", match[2], lines, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def skopeo(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"))
    return subprocess.run(
        ["skopeo", "--command-timeout", "60s", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=90,
    )


def https(
    served: Served,
    ca: Path,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    host, _, port = served.host_port.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[str]:
    """The v2 fixture served by docker-registry; yields its host:port."""
    root = tmp_path / "source"
    shutil.copytree(FIXTURE, root, symlinks=True)
    with reference_registry(root) as registry:
        yield registry.host


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def cert_dir_with(ca: Path, where: Path) -> Path:
    where.mkdir()
    shutil.copy(ca, where / "ca.crt")
    return where


def test_serve_tls_auto_prints_the_ca_and_steps_and_skopeo_trusts_only_that_ca(
    tmp_path, source, home
):
    root = tmp_path / "registry"
    ca = tmp_path / "registry-tls" / "ca.crt"
    args = ("--tls", "auto", "--addr", "127.0.0.1:0", "--root", str(root))
    with regtool_serve(*args, ready_text="curl") as served:
        assert served.lines[0].startswith("listening on https://127.0.0.1:")
        text = served.output()
        assert str(ca) in text
        assert f"/etc/docker/certs.d/{served.host_port}/ca.crt" in text
        assert "--cert-dir" in text
        assert sorted(p.name for p in ca.parent.iterdir()) == [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
        ]
        certs = cert_dir_with(ca, tmp_path / "certs")
        dest = f"docker://{served.host_port}/busybox:latest"

        untrusted = skopeo(
            "copy", "--src-tls-verify=false", f"docker://{source}/{IMAGE}", dest, home=home
        )
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr

        done = skopeo(
            "copy",
            "--src-tls-verify=false",
            "--dest-cert-dir",
            str(certs),
            f"docker://{source}/{IMAGE}",
            dest,
            home=home,
        )
        assert done.returncode == 0, done.stderr + served.output()
        raw = skopeo("inspect", "--raw", "--cert-dir", str(certs), dest, home=home)
        assert raw.returncode == 0, raw.stderr
        assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == DIGEST
    ca_bytes = ca.read_bytes()

    with regtool_serve(*args, ready_text="curl") as again:
        assert ca.read_bytes() == ca_bytes  # reused on restart: clients keep working
        status, _, headers = https(again, ca, "HEAD", "/v2/busybox/manifests/latest")
        assert status == 200 and headers["Docker-Content-Digest"] == DIGEST


def test_serve_with_htpasswd_wants_credentials_on_every_endpoint(tmp_path, source, home):
    htfile = tmp_path / "htpasswd"
    made = subprocess.run(
        [sys.executable, "-m", "regtool", "htpasswd", str(htfile), "ci", "--password-stdin"],
        input="s3cret:pass\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / "registry"
    ca = tmp_path / "registry-tls" / "ca.crt"
    args = ("--tls", "auto", "--addr", "127.0.0.1:0", "--root", str(root))
    with regtool_serve(*args, "--htpasswd", str(htfile), ready_text="curl") as served:
        certs = cert_dir_with(ca, tmp_path / "certs")
        src, dest = f"docker://{source}/{IMAGE}", f"docker://{served.host_port}/busybox:latest"
        copy = ("copy", "--src-tls-verify=false", "--dest-cert-dir", str(certs), src, dest)

        refused = skopeo(*copy[:-2], "--dest-creds", "ci:wrong", *copy[-2:], home=home)
        assert refused.returncode != 0
        assert re.search(r"unauthorized|401|authentication required", refused.stderr, re.I)
        assert not (root / "docker").exists() or not list(root.rglob("busybox"))

        done = skopeo(*copy[:-2], "--dest-creds", "ci:s3cret:pass", *copy[-2:], home=home)
        assert done.returncode == 0, done.stderr + served.output()

        anonymous = skopeo("inspect", "--raw", "--cert-dir", str(certs), dest, home=home)
        assert anonymous.returncode != 0
        pulled = skopeo(
            "inspect",
            "--raw",
            "--cert-dir",
            str(certs),
            "--creds",
            "ci:s3cret:pass",
            dest,
            home=home,
        )
        assert pulled.returncode == 0, pulled.stderr
        assert "sha256:" + hashlib.sha256(pulled.stdout.encode()).hexdigest() == DIGEST

        layer = EXPECTED["manifests"][IMAGE]["layers"][0]
        requests = [
            ("GET", "/v2/"),
            ("GET", "/v2/_catalog"),
            ("GET", "/v2/busybox/tags/list"),
            ("GET", "/v2/busybox/manifests/latest"),
            ("HEAD", f"/v2/busybox/manifests/{DIGEST}"),
            ("GET", f"/v2/busybox/blobs/{layer}"),
            ("HEAD", f"/v2/busybox/blobs/{layer}"),
            ("GET", f"/v2/busybox/referrers/{DIGEST}"),
            ("GET", "/v2/no/such/endpoint"),
            ("GET", "/v1/_ping"),
            ("GET", "/v1/search?q=busy"),
            ("POST", "/v2/intruder/blobs/uploads/"),
            ("PUT", "/v2/intruder/manifests/latest"),
            ("DELETE", f"/v2/busybox/manifests/{DIGEST}"),
            ("DELETE", f"/v2/busybox/blobs/{layer}"),
        ]
        for method, path in requests:
            body = b"{}" if method in ("PUT", "POST") else None
            for headers in ({}, basic("ci", "wrong"), basic("nobody", "s3cret:pass")):
                status, _, answer = https(served, ca, method, path, body=body, headers=headers)
                assert status == 401, (method, path, headers)
                assert answer["WWW-Authenticate"].startswith('Basic realm="'), (method, path)
        status, body, _ = https(
            served, ca, "GET", "/v2/_catalog", headers=basic("ci", "s3cret:pass")
        )
        assert status == 200 and json.loads(body)["repositories"] == ["busybox"]
        status, _, _ = https(
            served,
            ca,
            "HEAD",
            f"/v2/busybox/manifests/{DIGEST}",
            headers=basic("ci", "s3cret:pass"),
        )
        assert status == 200  # the refused DELETE removed nothing
