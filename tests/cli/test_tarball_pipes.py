"""import and export through pipes, the way the ssh path uses them, run as real processes:
`podman save IMG | regtool import -`, `regtool export REF -o - | podman load`,
`regtool export ... -o - | regtool import -`, and what import says when it moves a tag."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.ops.test_tarball import Podman
from tests.support.bombs import REPO_ROOT, run_regtool_measured
from tests.support.refregistry import reference_registry
from tests.support.v1tree import V1_FIXTURE, V2_FIXTURE, snapshot

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
REGTOOL = [sys.executable, "-m", "regtool"]


def regtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*REGTOOL, *args], input=stdin, capture_output=True, timeout=300, env=ENV, check=False
    )


def pipe(left: list[str], right: list[str]) -> tuple[int, int, bytes, str]:
    """`left | right` as two processes joined by a pipe: (left rc, right rc, right's
    stdout, both stderrs)."""
    first = subprocess.Popen(left, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    second = subprocess.Popen(
        right, stdin=first.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    assert first.stdout is not None
    first.stdout.close()  # the right side owns the read end now
    out, err2 = second.communicate(timeout=300)
    err1 = first.stderr.read() if first.stderr else b""
    first.wait(60)
    return first.returncode, second.returncode, out, (err1 + err2).decode()


def blob_folders(root: Path) -> set[str]:
    return {p.name for p in (root / "docker/registry/v2/blobs/sha256").glob("*/*")}


def ls(root: Path, *args: str) -> list[dict]:
    done = regtool("ls", *args, "--root", str(root), "-f", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def podman_image(tmp_path_factory):
    """podman (vfs store) holding centos:httpd pulled from the reference registry serving
    the v2 fixture: what the reference stored, as a client has it."""
    base = tmp_path_factory.mktemp("podman")
    root = Path(shutil.copytree(V2_FIXTURE, base / "served", symlinks=True))
    podman = Podman(base / "store")
    with reference_registry(root) as registry:
        ref = f"{registry.host}/centos:httpd"
        podman("pull", "-q", "--tls-verify=false", ref)
    yield podman, ref
    podman.close()


def test_podman_save_piped_into_import_stores_no_layer_twice(podman_image, tmp_path):
    """The user story: an image a client pushed, saved on another host and imported over
    ssh under a new tag: its raw layers are the pushed blobs again (same diff_id)."""
    podman, ref = podman_image
    dest = Path(shutil.copytree(V2_FIXTURE, tmp_path / "v2", symlinks=True))
    before = blob_folders(dest)
    left = [*podman.cmd, "save", ref]
    right = [*REGTOOL, "import", "-", "--tag", "centos:again", "--root", str(dest), "-f", "json"]
    saved, imported, out, err = pipe(left, right)
    assert (saved, imported) == (0, 0), err
    doc = json.loads(out)
    assert doc["file"] == "-" and doc["format"] == "docker-archive"
    assert doc["layers_reused"] == 7
    assert [i["status"] for i in doc["images"]] == ["written"]
    # the config was stored already; at most the manifest (built for the pushed blobs) is new
    assert len(blob_folders(dest) - before) <= 1
    again = next(r for r in ls(dest, "centos") if r["tag"] == "again")
    assert again["exclusive"] == 0
    layers = json.loads(regtool("layers", "centos:again", "--root", str(dest), "-f", "json").stdout)
    assert all("centos:httpd" in layer["shared_with"] for layer in layers["layers"])


def test_export_to_stdout_is_loaded_by_podman_through_a_pipe(tmp_path):
    podman = Podman(tmp_path / "store")
    try:
        left = [*REGTOOL, "export", "centos:httpd", "busybox", "-o", "-", "--root", str(V2_FIXTURE)]
        exported, loaded, out, err = pipe(left, [*podman.cmd, "load"])
        assert (exported, loaded) == (0, 0), err
        assert "12 blobs" in err and "written to stdout" in err  # the summary on stderr
        assert not Path("-").exists()
        images = podman("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert "centos:httpd" in images and "busybox:latest" in images
    finally:
        podman.close()


@pytest.mark.parametrize("source", ["-", "/dev/stdin"])
def test_export_to_stdout_round_trips_through_import_from_a_pipe(tmp_path, source):
    left = [*REGTOOL, "export", "centos:httpd", "busybox", "-o", "-", "--root", str(V2_FIXTURE)]
    right = [*REGTOOL, "import", source, "--root", str(tmp_path / "new"), "-f", "json"]
    exported, imported, out, err = pipe(left, right)
    assert (exported, imported) == (0, 0), err
    assert {
        (i["repository"], i["tag"], i["manifest"][7:19]) for i in json.loads(out)["images"]
    } == {
        ("centos", "httpd", "17814c04ed28"),
        ("busybox", "latest", "347f14253245"),
    }


def test_export_refuses_to_write_a_tarball_to_a_terminal(tmp_path):
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [*REGTOOL, "export", "busybox", "-o", "-", "--root", str(V2_FIXTURE)],
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
            env=ENV,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert b"refusing to write a tarball to a terminal" in done.stderr


def exported(tmp_path: Path, *refs: str) -> bytes:
    done = regtool("export", *refs, "-o", "-", "--root", str(V2_FIXTURE))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_tag_on_a_multi_image_stream_is_refused_and_writes_nothing(tmp_path):
    dest = Path(shutil.copytree(V2_FIXTURE, tmp_path / "v2", symlinks=True))
    before = snapshot(dest)
    tar = exported(tmp_path, "centos:httpd", "busybox")
    done = regtool("import", "-", "--tag", "x:1", "--root", str(dest), stdin=tar)
    assert done.returncode == 2
    assert b"--tag renames one image, but stdin holds 2" in done.stderr
    assert snapshot(dest) == before


def test_import_reports_a_moved_tag_as_replaced_with_its_old_digest(tmp_path):
    dest = Path(shutil.copytree(V2_FIXTURE, tmp_path / "v2", symlinks=True))
    tar = exported(tmp_path, "busybox")
    done = regtool("import", "-", "--tag", "centos:6.7", "--root", str(dest), stdin=tar)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.decode().splitlines() if x.startswith("centos:6.7"))
    assert line.split()[1] == "347f14253245" and line.endswith("replaced (was 09983a1f0c85)")
    js = regtool("import", "-", "--tag", "centos:6.7", "--root", str(dest), "-f", "json", stdin=tar)
    assert json.loads(js.stdout)["images"][0]["status"] == "present"  # moved already


def test_no_overwrite_keeps_the_tag_writes_the_rest_and_exits_1(tmp_path):
    dest = Path(shutil.copytree(V2_FIXTURE, tmp_path / "v2", symlinks=True))
    tar = exported(tmp_path, "busybox", "centos:httpd")  # busybox is new under this name
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    docker = json.loads(members["manifest.json"])
    docker[0]["RepoTags"] = ["centos:6.7"]  # moves centos:6.7 to busybox's image
    docker[1]["RepoTags"] = ["centos:copy"]
    members["manifest.json"] = json.dumps(docker).encode()
    members.pop("index.json")  # read as a docker-archive
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as out:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    args = ("import", "-", "--no-overwrite", "--root", str(dest), "-f", "json")
    done = regtool(*args, stdin=raw.getvalue())
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        "warning: --no-overwrite kept 1 tag(s) naming another image: centos:6.7"
    )
    images = {i["tag"]: i for i in json.loads(done.stdout)["images"]}
    assert images["6.7"]["status"] == "kept" and images["6.7"]["previous"].startswith(
        "sha256:09983a1f0c85"
    )
    assert images["copy"]["status"] == "written"
    tags = {r["tag"]: r["digest"][7:19] for r in ls(dest, "centos")}
    copy = images["copy"]["manifest"][7:19]  # rebuilt from manifest.json: a schema2 manifest
    assert tags == {"6.7": "09983a1f0c85", "httpd": "17814c04ed28", "copy": copy}


def test_import_onto_a_v1_root_says_what_to_do(tmp_path):
    v1 = Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1", symlinks=True))
    done = regtool("import", "-", "--root", str(v1), stdin=exported(tmp_path, "busybox"))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[0] == (
        f"Error: destination {v1} holds a v1 tree; import into a v2 root, "
        "or run `regtool migrate` first"
    )


def test_a_256_mib_incompressible_layer_through_stdin_stays_under_200_mb(tmp_path):
    """podman save's order (layers first, manifest.json last) through a real pipe: the layer
    streams into an upload session as it arrives, nothing else is spooled."""
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = 256 << 20
        with open("/dev/urandom", "rb") as random:
            tar.addfile(info, random)
    digest = hashlib.sha256()
    with layer.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    diff_id = digest.hexdigest()
    config = json.dumps(
        {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}
    )
    config_name = hashlib.sha256(config.encode()).hexdigest() + ".json"
    entry = [{"Config": config_name, "RepoTags": ["bigapp:1.0"], "Layers": [f"{diff_id}.tar"]}]
    with tarfile.open(tmp_path / "save.tar", "w") as tar:
        tar.add(layer, f"{diff_id}.tar")
        for name, text in ((config_name, config), ("manifest.json", json.dumps(entry))):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    layer.unlink()
    dest = tmp_path / "v2"
    run = run_regtool_measured(
        "import", "-", "--root", str(dest), "-f", "json", stdin=tmp_path / "save.tar"
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["images"][0]["size"] > 256 << 20
    assert run.peak_rss < 200 << 20, f"peak RSS {run.peak_rss >> 20} MiB"
    assert not (dest / "docker/registry/v2/repositories/regtool-import").exists()
