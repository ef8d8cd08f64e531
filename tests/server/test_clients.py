"""Real clients against `regtool serve` (a subprocess on 127.0.0.1), and cross-serving with
the reference registry (Debian docker-registry 2.8.2)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import oras.client
import oras.defaults
import oras.oci
import pytest

from regtool.server.handlers.context import Options
from tests.server.conftest import (
    FIXTURE_V2,
    INSECURE,
    copy_fixture,
    in_process,
    skopeo,
    subprocess_server,
)
from tests.support.refregistry import http_json, reference_registry, run_reference_gc

EXPECTED = json.loads((FIXTURE_V2 / "EXPECTED.json").read_text())
TAGS = sorted(EXPECTED["manifests"])  # "repo:tag"


def raw_digest(host: str, ref: str) -> str:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host}/{ref}")
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root written by `regtool serve` from skopeo copies of every fixture tag (--all)."""
    work = tmp_path_factory.mktemp("pushed")
    source = copy_fixture(FIXTURE_V2, work / "source")
    target = work / "target"
    with reference_registry(source) as ref, subprocess_server(target) as served:
        for tag in TAGS:
            skopeo(
                "copy",
                "--all",
                *INSECURE,
                f"docker://{ref.host}/{tag}",
                f"docker://{served.host}/{tag}",
            )
    return target


def test_skopeo_copy_all_into_regtool_keeps_every_digest(pushed: Path) -> None:
    with subprocess_server(pushed, "--read-only") as served:
        for tag in TAGS:
            assert raw_digest(served.host, tag) == EXPECTED["manifests"][tag]["digest"], tag


def test_skopeo_copy_out_of_regtool_into_the_reference_keeps_digests(
    pushed: Path, tmp_path: Path
) -> None:
    with (
        subprocess_server(pushed, "--read-only") as served,
        reference_registry(tmp_path / "ref") as ref,
    ):
        for tag in ("multi:latest", "centos:httpd"):
            skopeo(
                "copy",
                "--all",
                *INSECURE,
                f"docker://{served.host}/{tag}",
                f"docker://{ref.host}/{tag}",
            )
            assert raw_digest(ref.host, tag) == EXPECTED["manifests"][tag]["digest"]


def test_tree_written_by_regtool_is_served_and_kept_whole_by_the_reference(
    pushed: Path, tmp_path: Path
) -> None:
    root = copy_fixture(pushed, tmp_path / "copy")
    with reference_registry(root) as ref:
        status, catalog, _ = http_json(f"{ref.url}/v2/_catalog")
        assert status == 200
        assert catalog["repositories"] == EXPECTED["catalog"]
        for tag in TAGS:
            skopeo(
                "copy",
                "--all",
                "--src-tls-verify=false",
                f"docker://{ref.host}/{tag}",
                f"oci:{tmp_path / 'pulled'}:{tag.replace('/', '_').replace(':', '_')}",
            )
            assert raw_digest(ref.host, tag) == EXPECTED["manifests"][tag]["digest"]
        eligible, output = run_reference_gc(ref.config, dry_run=True)
    assert eligible == set(), output


def test_tree_written_by_the_reference_is_served_by_regtool(v2_copy: Path, tmp_path: Path) -> None:
    with subprocess_server(v2_copy) as served:
        status, catalog, _ = http_json(f"{served.url}/v2/_catalog")
        assert catalog["repositories"] == EXPECTED["catalog"]
        for tag in TAGS:
            skopeo(
                "copy",
                "--all",
                "--src-tls-verify=false",
                f"docker://{served.host}/{tag}",
                f"oci:{tmp_path / 'pulled'}:{tag.replace('/', '_').replace(':', '_')}",
            )
            assert raw_digest(served.host, tag) == EXPECTED["manifests"][tag]["digest"]
        artifact = EXPECTED["artifact"]
        status, index, headers = http_json(
            f"{served.url}/v2/{artifact['repository']}/referrers/{artifact['subject']['digest']}"
        )
        assert status == 200
        assert [m["digest"] for m in index["manifests"]] == [artifact["digest"]]
        assert index["manifests"][0]["artifactType"] == artifact["artifact_type"]


def podman(store: Path, *args: str) -> str:
    cmd = [
        "podman",
        "--storage-driver",
        "vfs",
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stderr}"
    return done.stdout.strip()


def test_podman_replays_the_blog_workflow(v2_copy: Path, tmp_path: Path) -> None:
    """Pull an image, tag it 127.0.0.1:PORT/busybox:latest, push it there, pull it back."""
    store = Path(tempfile.mkdtemp(prefix="rtpod", dir="/tmp"))  # podman: runroot < 50 chars
    try:
        image_id, again, tags = _blog_workflow(store, v2_copy, tmp_path / "registry")
    finally:
        subprocess.run(
            [
                "podman",
                "--storage-driver",
                "vfs",
                "--root",
                str(store / "root"),
                "--runroot",
                str(store / "run"),
                "system",
                "reset",
                "--force",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(store, ignore_errors=True)
    assert again == image_id
    assert tags == {"name": "busybox", "tags": ["latest"]}


def _blog_workflow(store: Path, source: Path, target: Path) -> tuple[str, str, dict]:
    with subprocess_server(source, "--read-only") as upstream, subprocess_server(target) as local:
        podman(store, "pull", "--tls-verify=false", f"{upstream.host}/busybox:latest")
        image_id = podman(
            store, "image", "inspect", "--format", "{{.Id}}", f"{upstream.host}/busybox:latest"
        )
        podman(store, "tag", f"{upstream.host}/busybox:latest", f"{local.host}/busybox:latest")
        podman(store, "push", "--tls-verify=false", f"{local.host}/busybox:latest")
        podman(store, "rmi", "--all", "--force")
        podman(store, "pull", "--tls-verify=false", f"{local.host}/busybox:latest")
        again = podman(
            store, "image", "inspect", "--format", "{{.Id}}", f"{local.host}/busybox:latest"
        )
        status, tags, _ = http_json(f"{local.url}/v2/busybox/tags/list")
    return image_id, again, tags


def test_oras_pushes_and_pulls_an_artifact_and_its_referrer(tmp_path: Path) -> None:
    payload = tmp_path / "notes.txt"
    payload.write_text("artifact payload\n")
    with in_process(tmp_path / "registry", Options()) as served:
        client = oras.client.OrasClient(insecure=True)
        target = f"{served.host}/notes/docs:v1"
        client.push(files=[str(payload)], target=target, disable_path_validation=True)
        files = client.pull(target=target, outdir=str(tmp_path / "out"))
        status, _, headers = http_json(
            f"{served.url}/v2/notes/docs/manifests/v1",
            accept=oras.defaults.default_manifest_media_type,
        )
        subject = oras.oci.Subject(
            headers["Content-Type"],
            headers["Docker-Content-Digest"],
            int(headers["Content-Length"]),
        )
        answer = client.push(
            files=[str(payload)],
            target=f"{served.host}/notes/docs:review",
            disable_path_validation=True,
            subject=subject,
        )
        status, index, _ = http_json(f"{served.url}/v2/notes/docs/referrers/{subject.digest}")
    assert [Path(f).read_text() for f in files] == ["artifact payload\n"]
    assert answer.headers["OCI-Subject"] == subject.digest
    assert [m["digest"] for m in index["manifests"]] == [answer.headers["Docker-Content-Digest"]]
