"""Shared helpers for the fixture builders (``mkfixtures_v1.py``, ``mkfixtures_v2.py``).

Everything here is deterministic: tar members have fixed owners and mtimes, gzip
streams carry mtime 0, and file contents come from ``random.Random`` seeded with
a string.  The same layer tars are used by both the v1 and the v2 fixture, so a
v1 ``layer`` file and the matching v2 blob are byte-identical.

The second half runs the reference registry (Debian ``docker-registry`` 2.8.2)
on loopback; ``tests/support/refregistry.py`` loads this module by path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # regtool from this checkout
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from regtool.model.tarsum import tarsum_v0 as _tarsum_stream  # noqa: E402

REGISTRY_BIN = "docker-registry"
EMPTY_TAR = b"\0" * 1024

# ---------------------------------------------------------------------------
# digests and JSON


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def compact_json(obj: object) -> bytes:
    """JSON the way Go's ``json.Marshal`` writes it (no spaces, key order kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def py_json(obj: object) -> bytes:
    """JSON the way the Python v1 registry wrote it (``json.dumps`` defaults)."""
    return json.dumps(obj).encode()


# ---------------------------------------------------------------------------
# tar and gzip


@dataclass(frozen=True)
class Entry:
    """One tar member: kind is ``dir``, ``file`` or ``symlink``."""

    path: str
    kind: str
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def _tarinfo(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.size = len(entry.data)
    return info


def make_tar(entries: list[Entry], mtime: int) -> bytes:
    """A ustar archive ending in two zero blocks, without record padding (like Go)."""
    out = bytearray()
    for entry in entries:
        out += _tarinfo(entry, mtime).tobuf(tarfile.USTAR_FORMAT)
        if entry.kind == "file" and entry.data:
            out += entry.data + b"\0" * (-len(entry.data) % 512)
    return bytes(out + EMPTY_TAR)


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0, no file name, OS byte 255: independent of Python's gzip module."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(data) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + body + trailer


# ---------------------------------------------------------------------------
# v1 checksums (research/v1-layout.md section 3)


def simple_checksum(json_bytes: bytes, layer_bytes: bytes) -> str:
    return digest(json_bytes + b"\n" + layer_bytes)


def tarsum_v0(json_bytes: bytes, tar_bytes: bytes) -> str:
    """``tarsum+sha256:`` over a layer tar held in memory (regtool's streaming tarsum)."""
    return _tarsum_stream(json_bytes, io.BytesIO(tar_bytes))


# ---------------------------------------------------------------------------
# the image family (same steps for v1 and v2)

# File specs: ("d", path) dir, ("t", path, size) text, ("x", path, size) binary
# executable, ("l", path, target) symlink, ("w", path) AUFS whiteout.
FileSpec = tuple


@dataclass(frozen=True)
class Step:
    key: str
    created_by: str
    files: tuple[FileSpec, ...]
    cmd: tuple[str, ...] | None = None
    arch: str = "amd64"


def _add(key: str) -> str:
    return f"/bin/sh -c #(nop) ADD file:{sha256_hex(key.encode())} in /"


def _run(text: str) -> str:
    return f"/bin/sh -c {text}"


_BASH = ("/bin/bash",)
_HTTPD = ("/usr/sbin/httpd", "-DFOREGROUND")
_CONF = (("d", "etc"), ("d", "etc/httpd"), ("d", "etc/httpd/conf"))
_WWW = (("d", "var"), ("d", "var/www"), ("d", "var/www/html"))
_SBIN = (("d", "usr"), ("d", "usr/sbin"))

STEPS: tuple[Step, ...] = (
    Step(
        "busybox-rootfs",
        _add("busybox-rootfs"),
        (
            ("d", "bin"),
            ("x", "bin/busybox", 2600),
            ("l", "bin/sh", "busybox"),
            ("d", "etc"),
            ("t", "etc/group", 120),
            ("t", "etc/passwd", 180),
        ),
    ),
    Step(
        "busybox-motd",
        _run("echo 'welcome to busybox' > /etc/motd"),
        (("d", "etc"), ("t", "etc/motd", 90)),
        ("sh",),
    ),
    Step("busybox-cmd", '/bin/sh -c #(nop) CMD ["sh"]', (), ("sh",)),
    Step(
        "centos-rootfs",
        _add("centos-rootfs"),
        (
            ("d", "bin"),
            ("x", "bin/bash", 1900),
            ("d", "etc"),
            ("t", "etc/centos-release", 30),
            ("t", "etc/passwd", 600),
            ("t", "etc/yum.conf", 500),
            ("d", "usr"),
            ("d", "usr/lib64"),
            ("x", "usr/lib64/libc.so.6", 1600),
        ),
        _BASH,
    ),
    Step(
        "centos-update",
        _run("yum -y update && yum clean all"),
        (
            ("d", "var"),
            ("d", "var/lib"),
            ("d", "var/lib/rpm"),
            ("t", "var/lib/rpm/Packages", 1500),
            ("d", "var/cache"),
            ("w", "var/cache/.wh.yum"),
        ),
        _BASH,
    ),
    Step(
        "centos-locale",
        _run("localedef -i en_US -f UTF-8 en_US.UTF-8"),
        (
            ("d", "usr"),
            ("d", "usr/lib"),
            ("d", "usr/lib/locale"),
            ("t", "usr/lib/locale/locale-archive", 1400),
        ),
        _BASH,
    ),
    Step(
        "centos-tools",
        _run("yum -y install which tar && yum clean all"),
        (("d", "usr"), ("d", "usr/bin"), ("x", "usr/bin/tar", 1500), ("x", "usr/bin/which", 700)),
        _BASH,
    ),
    Step(
        "centos-build",
        _run("echo 'CentOS 6.7 (docker build)' > /etc/centos-build"),
        (("d", "etc"), ("t", "etc/centos-build", 40)),
        _BASH,
    ),
    Step(
        "httpd-install",
        _run("yum -y install httpd && yum clean all"),
        (*_CONF, ("t", "etc/httpd/conf/httpd.conf", 2000), *_SBIN, ("x", "usr/sbin/httpd", 1700)),
        _BASH,
    ),
    Step(
        "httpd-index",
        _run("echo 'It works' > /var/www/html/index.html"),
        (*_WWW, ("t", "var/www/html/index.html", 60)),
        _HTTPD,
    ),
    Step(
        "gjk-httpd",
        _run("yum -y install httpd mod_ssl && yum clean all"),
        (
            *_CONF,
            ("t", "etc/httpd/conf/httpd.conf", 1900),
            ("d", "etc/httpd/conf.d"),
            ("t", "etc/httpd/conf.d/ssl.conf", 700),
            *_SBIN,
            ("x", "usr/sbin/httpd", 1700),
        ),
        _BASH,
    ),
    Step(
        "gjk-conf",
        f"/bin/sh -c #(nop) COPY file:{sha256_hex(b'gjk-conf')} in /etc/httpd/conf/httpd.conf",
        (*_CONF, ("t", "etc/httpd/conf/httpd.conf", 1200)),
        _BASH,
    ),
    Step(
        "gjk-site",
        _run("echo 'gjkdhr test page' > /var/www/html/index.html"),
        (*_WWW, ("t", "var/www/html/index.html", 300)),
        _HTTPD,
    ),
    Step(
        "centos6-vim",
        _run("yum -y install vim-minimal && yum clean all"),
        (("d", "bin"), ("x", "bin/vi", 1800)),
        _BASH,
    ),
    Step(
        "sshd-install",
        _run("yum -y install openssh-server && ssh-keygen -A"),
        (
            ("d", "etc"),
            ("d", "etc/ssh"),
            ("t", "etc/ssh/sshd_config", 1200),
            ("t", "etc/ssh/ssh_host_rsa_key", 900),
            *_SBIN,
            ("x", "usr/sbin/sshd", 1500),
        ),
        ("/usr/sbin/sshd", "-D"),
    ),
    Step(
        "orphan-httpd",
        _run("yum -y install httpd && yum clean all"),
        (*_CONF, ("t", "etc/httpd/conf/httpd.conf", 1800), *_SBIN, ("x", "usr/sbin/httpd", 1600)),
        _HTTPD,
    ),
    Step(
        "nginx-aborted",
        _run("yum -y install nginx && yum clean all"),
        (("d", "etc"), ("d", "etc/nginx"), ("t", "etc/nginx/nginx.conf", 1100)),
        _BASH,
    ),
    Step(
        "multi-amd64",
        _add("multi-amd64"),
        (("d", "bin"), ("x", "bin/hello", 1200), ("d", "etc"), ("t", "etc/os-release", 100)),
        ("/bin/hello",),
    ),
    Step(
        "multi-arm64",
        _add("multi-arm64"),
        (("d", "bin"), ("x", "bin/hello", 1100), ("d", "etc"), ("t", "etc/os-release", 100)),
        ("/bin/hello",),
        "arm64",
    ),
)
STEP_BY_KEY = {step.key: step for step in STEPS}

CENTOS67 = ("centos-rootfs", "centos-update", "centos-locale", "centos-tools", "centos-build")
CHAINS: dict[str, tuple[str, ...]] = {
    "busybox": ("busybox-rootfs", "busybox-cmd"),
    "busybox-previous": ("busybox-rootfs", "busybox-motd"),
    "centos-6.7": CENTOS67,
    "centos-httpd": (*CENTOS67, "httpd-install", "httpd-index"),
    "gjkdhr-centos-httpd": (*CENTOS67, "gjk-httpd", "gjk-conf", "gjk-site"),
    "centos6": (*CENTOS67, "centos6-vim"),
    "sshd": (*CENTOS67, "sshd-install"),
    "orphan": (*CENTOS67, "orphan-httpd"),
    "in-progress": (*CENTOS67, "nginx-aborted"),
    "multi-amd64": ("multi-amd64",),
    "multi-arm64": ("multi-arm64",),
}

_WORDS = (
    "Listen ServerRoot include yum gpgcheck enabled baseurl mirrorlist root nologin "
    "bash x86_64 el6 rpm cache LoadModule DocumentRoot Directory AllowOverride None "
    "Options Indexes FollowSymLinks Require granted en_US UTF-8 locale archive lib64 "
    "installonly_limit keepcache debuglevel logfile exactarch obsoletes plugins"
).split()


def created_at(step: Step) -> datetime:
    """Whole-second creation time of a step (also the mtime of its tar members)."""
    index = STEPS.index(step)
    base = datetime(2015, 9, 1, 9, 30, tzinfo=UTC)
    return base + timedelta(hours=17 * index, minutes=7 * index, seconds=13 * index)


def created_str(step: Step) -> str:
    """RFC 3339 with nanoseconds, as Go wrote ``created`` in image JSON."""
    nanos = random.Random(f"created:{step.key}").randrange(10**9)
    return created_at(step).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _text(rng: random.Random, size: int) -> bytes:
    out = ""
    while len(out) < size:
        out += " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9))) + "\n"
    return out[: size - 1].encode() + b"\n"


def _entry(spec: FileSpec, rng: random.Random) -> Entry:
    kind, path = spec[0], spec[1]
    if kind == "d":
        return Entry(path, "dir", mode=0o755)
    if kind == "l":
        return Entry(path, "symlink", mode=0o777, target=spec[2])
    if kind == "w":
        return Entry(path, "file")
    if kind == "x":
        return Entry(path, "file", rng.randbytes(spec[2]), 0o755)
    return Entry(path, "file", _text(rng, spec[2]))


@dataclass(frozen=True)
class Layer:
    step: Step
    tar: bytes
    gz: bytes
    file_bytes: int  # uncompressed bytes of regular files (v1 "Size")

    @property
    def empty(self) -> bool:
        return not self.step.files

    @property
    def diff_id(self) -> str:
        return digest(self.tar)

    @property
    def digest(self) -> str:
        return digest(self.gz)


def build_layer(key: str) -> Layer:
    step = STEP_BY_KEY[key]
    rng = random.Random(f"layer:{key}")
    entries = [_entry(spec, rng) for spec in step.files]
    tar = make_tar(entries, int(created_at(step).timestamp()))
    size = sum(len(e.data) for e in entries if e.kind == "file")
    return Layer(step, tar, gzip_bytes(tar), size)


# ---------------------------------------------------------------------------
# OCI image layout (input for skopeo)

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_OCI_INDEX)


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


class OciLayout:
    """A minimal OCI image layout directory with named references."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.refs: list[dict[str, object]] = []
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(compact_json({"imageLayoutVersion": "1.0.0"}))

    def add_blob(self, data: bytes) -> None:
        (self.root / "blobs" / "sha256" / sha256_hex(data)).write_bytes(data)

    def tag(self, ref: str, desc: dict[str, object]) -> None:
        annotations = {"org.opencontainers.image.ref.name": ref}
        self.refs.append({**desc, "annotations": annotations})
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_bytes(compact_json(index))


# ---------------------------------------------------------------------------
# HTTP and the reference registry

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes, Message]:
    """One HTTP exchange without proxies; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(), err.headers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def registry_config(
    root: Path,
    addr: str,
    *,
    readonly: bool = False,
    delete: bool = True,
    s3: dict[str, object] | None = None,
) -> str:
    """config.yml text for ``docker-registry serve`` (no auth, no cache, no purger); with
    `s3` (the keys of storage.s3), a bucket instead of the filesystem `root`."""
    driver = (
        ["  s3:", *(f"    {key}: {json.dumps(value)}" for key, value in s3.items())]
        if s3 is not None
        else ["  filesystem:", f"    rootdirectory: {json.dumps(str(root))}"]
    )
    return "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            *driver,
            "  delete:",
            f"    enabled: {str(delete).lower()}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "    readonly:",
            f"      enabled: {str(readonly).lower()}",
            "http:",
            f"  addr: {addr}",
            "  secret: regtool-fixture-secret",
            "",
        ]
    )


@dataclass(frozen=True)
class RunningRegistry:
    url: str
    host: str
    config: Path
    log: Path
    pid: int


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            if http_request("GET", url + "/v2/", timeout=1.0)[0] == 200:
                return ""
        except OSError:
            pass
        time.sleep(0.1)
    return f"no 200 from {url}/v2/ within {timeout:.0f} s"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_registry(
    root: Path,
    workdir: Path,
    *,
    readonly: bool = False,
    delete: bool = True,
    timeout: float = 15.0,
    attempts: int = 3,
    s3: dict[str, object] | None = None,
) -> Iterator[RunningRegistry]:
    """Start ``docker-registry serve`` on 127.0.0.1 for ``root`` (or the `s3` bucket);
    stop it on exit."""
    config, log = workdir / "config.yml", workdir / "registry.log"
    # registry 2.8.2's s3 driver panics at start when AWS_CA_BUNDLE is set
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for attempt in range(1, attempts + 1):
        host = f"127.0.0.1:{free_port()}"
        config.write_text(registry_config(root, host, readonly=readonly, delete=delete, s3=s3))
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        problem = _wait_ready(proc, f"http://{host}", log, timeout)
        if not problem:
            break
        _stop(proc)
        text = log.read_text(errors="replace")
        if attempt == attempts or "address already in use" not in text:
            raise RuntimeError(f"reference registry did not start ({problem}); log:\n{text}")
    try:
        yield RunningRegistry(f"http://{host}", host, config, log, proc.pid)
    finally:
        _stop(proc)
