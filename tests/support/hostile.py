"""Trees holding what an attacker (or a careless script) can store: manifests nested 1,500
levels deep, links naming 300 MB blobs, v1 files of either kind.

The deep manifest is pushed through the reference registry, which stores it without
complaint; the 300 MB objects are sparse files (cheap to make, costly to read whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from regtool.layout.v1 import paths as v1paths
from regtool.layout.v2 import paths
from regtool.layout.v2.writer import V2Writer
from regtool.model import mediatype as mt
from regtool.storage.filesystem import FilesystemDriver
from tests.support.refregistry import http_request, reference_registry

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPTH = 1500
BIG = 300 * 1024 * 1024
PEAK_RSS_LIMIT = 150 * 1024 * 1024  # well under BIG: the big object was never read whole
ACCEPT = ",".join((mt.DOCKER_MANIFEST, mt.OCI_MANIFEST))


def deep_array(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


@dataclass(frozen=True)
class Pushed:
    digest: str  # the deep manifest
    raw: bytes
    subject: str  # the manifest both name as their subject
    shallow: str  # the same manifest without the deep field: an ordinary referrer


def push_deep_manifest(root: Path, repo: str = "busybox") -> Pushed:
    """Through the reference registry: `repo:latest`'s manifest plus a `subject` naming it,
    tagged `repo:shallow`, and the same plus a DEPTH-deep array, tagged `repo:deep`."""
    with reference_registry(root) as registry:
        url = f"{registry.url}/v2/{repo}/manifests"
        status, body, headers = http_request("GET", f"{url}/latest", headers={"Accept": ACCEPT})
        assert status == 200, body
        media_type = headers["Content-Type"]
        subject = {"mediaType": media_type, "digest": _sha(body), "size": len(body)}
        doc = json.loads(body)
        doc["subject"] = subject
        shallow = json.dumps(doc).encode()
        deep = (json.dumps(doc)[:-1] + f', "x-deep": {deep_array()}}}').encode()
        for tag, raw in (("shallow", shallow), ("deep", deep)):
            status, body, headers = http_request(
                "PUT", f"{url}/{tag}", data=raw, headers={"Content-Type": media_type}
            )
            assert status == 201, body
            assert headers["Docker-Content-Digest"] == _sha(raw)
    return Pushed(_sha(deep), deep, subject["digest"], _sha(shallow))


def big_sparse_file(path: Path, size: int = BIG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


def tag_big_blob(root: Path, repo: str = "busybox", tag: str = "big") -> str:
    """A revision and a tag of `repo` naming a 300 MB (sparse) blob; returns its digest."""
    digest = _sha(b"a digest nothing hashes to: the blob is never read whole")
    big_sparse_file(root / paths.blob_data(digest))
    writer = V2Writer(FilesystemDriver(root))
    writer.driver.put(paths.revision_link(repo, digest), digest.encode())
    writer.tag(repo, tag, digest)
    return digest


def tag_manifest_with_big_config(root: Path, repo: str = "busybox", tag: str = "bigconfig") -> str:
    """A manifest whose config descriptor says 2 bytes but names a 300 MB (sparse) blob."""
    config = _sha(b"a config nothing hashes to")
    big_sparse_file(root / paths.blob_data(config))
    writer = V2Writer(FilesystemDriver(root))
    writer.link_blob(repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config, "size": 2},
        "layers": [],
    }
    return writer.put_manifest(repo, json.dumps(manifest).encode(), tag)


def v1_top_image(root: Path, repo: str = "library/busybox", tag: str = "latest") -> str:
    return (root / v1paths.tag_file(repo, tag)).read_text().strip()


def peak_rss(pid: int | str = "self") -> int:
    """The high-water mark of a process's resident memory, in bytes (Linux VmHWM).

    Unlike getrusage's ru_maxrss it belongs to the process's current memory map, so a
    child does not inherit the peak of the test process that forked it.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def run_regtool(*args: str) -> tuple[int, str, str, int]:
    """`regtool ARGS` in a fresh interpreter: (exit code, stdout, stderr, peak RSS in bytes)."""
    code = (
        "import sys\n"
        "from regtool.cli.app import main\n"
        "from tests.support.hostile import peak_rss\n"
        "sys.argv = ['regtool', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    sys.stderr.write(f'\\npeak-rss {peak_rss()}\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "250"},
    )
    found = re.search(r"^peak-rss (\d+)$", done.stderr, re.MULTILINE)
    stderr = re.sub(r"\n?peak-rss \d+\n", "", done.stderr, count=1)
    return done.returncode, done.stdout, stderr, int(found.group(1)) if found else -1


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
