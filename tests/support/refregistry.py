"""Run the reference registry (Debian ``docker-registry`` 2.8.2) from tests.

The process handling lives in ``scripts/_fixturelib.py`` (the fixture builder
needs it too); it is loaded here by file path so that ``scripts/`` need not be
a package.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

from tests.support.scripts import load_script

_ELIGIBLE = re.compile(r"^blob eligible for deletion: (sha256:[0-9a-f]{64})\s*$", re.MULTILINE)


fixturelib = load_script("_fixturelib")
RunningRegistry = fixturelib.RunningRegistry
ALL_MANIFEST_TYPES: tuple[str, ...] = fixturelib.ALL_MANIFEST_TYPES
http_request = fixturelib.http_request


@contextmanager
def reference_registry(
    root: Path,
    *,
    readonly: bool = False,
    delete: bool = True,
    s3: dict[str, object] | None = None,
) -> Iterator[RunningRegistry]:
    """Serve ``root`` (the rootdirectory; or the bucket of ``s3``, storage.s3's keys) on
    127.0.0.1; yields ``.url``, ``.host``, ``.config``.

    Raises RuntimeError with the registry log if ``/v2/`` does not answer 200
    within about 15 s.  The process is terminated on exit.
    """
    with tempfile.TemporaryDirectory(prefix="refregistry-") as work:
        with fixturelib.run_registry(
            Path(root), Path(work), readonly=readonly, delete=delete, timeout=15.0, s3=s3
        ) as registry:
            yield registry


def run_reference_gc(
    config: Path, *, dry_run: bool = True, delete_untagged: bool = False
) -> tuple[set[str], str]:
    """Run ``docker-registry garbage-collect``; return (blobs eligible for deletion, output).

    The output is stdout followed by stderr.  A non-zero exit raises RuntimeError.
    """
    cmd = [fixturelib.REGISTRY_BIN, "garbage-collect"]
    if dry_run:
        cmd.append("--dry-run")
    if delete_untagged:
        cmd.append("-m")
    cmd.append(str(config))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # its s3 driver panics
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{output}")
    return set(_ELIGIBLE.findall(done.stdout)), output


def http_json(url: str, *, accept: str | None = None) -> tuple[int, dict, Message]:
    """GET ``url``; return (status, parsed JSON body or {}, headers)."""
    headers = {"Accept": accept} if accept else {}
    status, body, response_headers = http_request("GET", url, headers=headers)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}, response_headers


def pull_every_tag(host: str, manifests: dict[str, dict], folder: Path, skip: str = "") -> None:
    """skopeo-copy every `name:tag` of `manifests` (EXPECTED.json's) but `skip` from the
    registry at `host` into `folder`, and check each manifest's digest."""
    import hashlib

    from tests.support.clients import skopeo_copy_all

    for name in sorted(manifests):
        if name == skip:
            continue
        target = folder / name.replace("/", "_").replace(":", "_")
        target.parent.mkdir(parents=True, exist_ok=True)
        skopeo_copy_all(f"docker://{host}/{name}", f"dir:{target}")
        pulled = hashlib.sha256((target / "manifest.json").read_bytes()).hexdigest()
        assert f"sha256:{pulled}" == manifests[name]["digest"], name
