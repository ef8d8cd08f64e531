"""ls, layers, verify and gc on an S3 bucket (a real Ceph RGW) answer exactly as on a disk.

The v2 fixture tree (written by the reference registry) is uploaded with the s3 driver's keys
(scripts/s3load.py); every read command must then print the same thing for the bucket as for
the local tree, and the reference's own garbage-collect must plan the same blobs in the bucket.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout.v2 import bulk
from tests.conftest import V2_FIXTURE
from tests.support.refregistry import (
    http_request,
    pull_every_tag,
    reference_registry,
    run_reference_gc,
)
from tests.support.rgw import new_bucket, s3_client, s3load
from tests.support.scripts import load_script

PREFIX = "/registry"
EXPECTED = json.loads((V2_FIXTURE / "EXPECTED.json").read_text())


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/mksynthetic.py's small tree: 50 repositories, shared families, untagged."""
    mksynthetic = load_script("mksynthetic")
    root = tmp_path_factory.mktemp("synthetic") / "root"
    mksynthetic.generate(str(root), mksynthetic.SMALL)
    return root


@pytest.fixture(scope="module", params=["fixture", "synthetic"])
def tree(request: pytest.FixtureRequest) -> Path:
    """The local tree each bucket test compares against (read-only)."""
    if request.param == "fixture":
        return V2_FIXTURE
    return request.getfixturevalue("synthetic_root")


@pytest.fixture(scope="module")
def bucket_config(rgw: Any, tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config.yml whose storage.s3 bucket holds `tree`."""
    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, tree, PREFIX)
    return s3load.write_config(rgw, bucket, PREFIX, tmp_path_factory.mktemp("s3") / "s3.yml")


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def both(tree: Path, bucket_config: Path, *args: str) -> tuple[Any, Any]:
    """(JSON output for the local tree, JSON output for the bucket)."""
    code, local = regtool(*args, "--root", str(tree), "--format", "json")
    assert code == 0, local
    code, remote = regtool(*args, "--config", str(bucket_config), "--format", "json")
    assert code == 0, remote
    return json.loads(local), json.loads(remote)


def some_tags(tree: Path, count: int) -> list[str]:
    code, out = regtool("ls", "--root", str(tree), "--format", "json")
    rows = [r for r in json.loads(out) if not r["warnings"]]
    step = max(1, len(rows) // count)
    return [f"{r['repository']}:{r['tag']}" for r in rows[::step][:count]]


@pytest.mark.parametrize("window", [1, bulk.WINDOW_KEYS], ids=["window-1", "window-default"])
@pytest.mark.parametrize("args", [("ls",), ("ls", "--repos"), ("ls", "PATTERN")])
def test_ls_prints_the_same_for_the_bucket(
    tree: Path, bucket_config: Path, args: tuple, window: int, monkeypatch
) -> None:
    """ls streams a bucket a window of repositories at a time: the rows are the disk's."""
    monkeypatch.setattr(bulk, "WINDOW_KEYS", window)
    if args[-1] == "PATTERN":  # the first repository's first letter: some rows, not all
        args = ("ls", some_tags(tree, 1)[0][0] + "*")
    local, remote = both(tree, bucket_config, *args)
    assert remote == local and local


def test_layers_prints_the_same_for_the_bucket(tree: Path, bucket_config: Path) -> None:
    for ref in some_tags(tree, 4):
        local, remote = both(tree, bucket_config, "layers", ref)
        assert remote == local and local["layers"]


@pytest.mark.parametrize("window", [1, bulk.WINDOW_KEYS], ids=["window-1", "window-default"])
def test_verify_finds_the_same_in_the_bucket(
    tree: Path, bucket_config: Path, window: int, monkeypatch
) -> None:
    monkeypatch.setattr(bulk, "WINDOW_KEYS", window)
    local, remote = both(tree, bucket_config, "verify")
    assert remote == local and local["checked"]["blobs"] > 0


@pytest.mark.parametrize("untagged", [False, True], ids=["plain", "delete-untagged"])
@pytest.mark.parametrize("window", [1, bulk.WINDOW_KEYS], ids=["window-1", "window-default"])
def test_gc_dry_run_plans_the_same_in_the_bucket(
    tree: Path, bucket_config: Path, untagged: bool, window: int, monkeypatch
) -> None:
    """gc streams a bucket a window of repositories (and of blob fans) at a time: however
    small the window, the plan is the disk's."""
    monkeypatch.setattr(bulk, "WINDOW_KEYS", window)
    extra = ("--delete-untagged",) if untagged else ()
    local, remote = both(tree, bucket_config, "gc", "--dry-run", "--grace", "0", *extra)
    assert remote == local
    assert any(entry["kind"] == "blob" for entry in local["delete"]) or not untagged


@pytest.mark.parametrize("untagged", [False, True], ids=["plain", "delete-untagged"])
def test_gc_dry_run_on_the_bucket_matches_the_reference(
    tree: Path, bucket_config: Path, tmp_path: Path, untagged: bool
) -> None:
    """The reference plans the same in the bucket as on the disk; regtool's plan is the
    reference's, except (with -m) for the index children 2.8.2 drops by its bug #3178."""
    expected, _ = run_reference_gc(bucket_config, dry_run=True, delete_untagged=untagged)
    local_config = tmp_path / "local.yml"
    local_config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tree}\n")
    on_disk, _ = run_reference_gc(local_config, dry_run=True, delete_untagged=untagged)
    assert expected == on_disk and (expected or not untagged)
    ours_on_disk = blob_plan("--root", str(tree), untagged=untagged)
    ours = blob_plan("--config", str(bucket_config), untagged=untagged)
    assert ours == ours_on_disk and ours <= expected
    assert ours == expected or untagged


def blob_plan(*where: str, untagged: bool) -> set[str]:
    extra = ("--delete-untagged",) if untagged else ()
    code, out = regtool("gc", "--dry-run", "--grace", "0", *extra, *where, "-f", "json")
    assert code == 0, out
    return {e["id"] for e in json.loads(out)["delete"] if e["kind"] == "blob"}


def test_after_a_real_gc_on_the_bucket_the_reference_serves_every_remaining_tag(
    rgw: Any, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, V2_FIXTURE, PREFIX)
    config = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "s3.yml")
    s3 = yaml.safe_load(config.read_text())["storage"]["s3"]
    gone = "centos:6.7"
    with reference_registry(tmp_path, s3=s3) as registry:  # the reference deletes, in the bucket
        digest = EXPECTED["manifests"][gone]["digest"]
        status, body, _ = http_request("DELETE", f"{registry.url}/v2/centos/manifests/{digest}")
        assert status == 202, body
    before = blob_plan("--config", str(config), untagged=True)
    code, out = regtool(
        "gc", "--yes", "--grace", "0", "--delete-untagged", "--config", str(config), "-f", "json"
    )
    assert code == 0, out
    deleted = json.loads(out)["delete"]
    assert {"blob", "manifest", "link"} <= {e["kind"] for e in deleted}
    assert {e["id"] for e in deleted if e["kind"] == "blob"} == before
    assert blob_plan("--config", str(config), untagged=True) == set()
    code, out = regtool("verify", "--config", str(config), "-f", "json")
    assert code == 0 and json.loads(out)["problems"] == [], out
    with reference_registry(tmp_path, s3=s3) as registry:
        pull_every_tag(registry.host, EXPECTED["manifests"], tmp_path / "pulled", skip=gone)


def test_export_from_the_bucket_writes_the_same_tarball(
    tree: Path, bucket_config: Path, tmp_path: Path
) -> None:
    tarballs = []
    refs = some_tags(tree, 2)
    for where in (("--root", str(tree)), ("--config", str(bucket_config))):
        out_file = tmp_path / f"{len(tarballs)}.tar"
        code, out = regtool("export", *refs, "-o", str(out_file), *where)
        assert code == 0, out
        tarballs.append(out_file.read_bytes())
    assert tarballs[0] == tarballs[1] and len(tarballs[0]) > 10_000


def test_rm_on_the_bucket_removes_what_it_removes_on_a_disk(rgw: Any, tmp_path: Path) -> None:
    import shutil

    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, V2_FIXTURE, PREFIX)
    config = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "s3.yml")
    local = shutil.copytree(V2_FIXTURE, tmp_path / "local")
    results = []
    for where in (("--root", str(local)), ("--config", str(config))):
        code, out = regtool("rm", "centos:6.7", "gjkdhr/centos:httpd", "--yes", *where)
        assert code == 0, out
        code, out = regtool("ls", *where, "-f", "json")
        results.append(json.loads(out))
    assert results[0] == results[1]
    assert {(r["repository"], r["tag"]) for r in results[1]}.isdisjoint(
        {("centos", "6.7"), ("gjkdhr/centos", "httpd")}
    )


# -- a bucket that cannot be read: one line, exit 3 -------------------------------------------
def config_with(tmp_path: Path, bucket_config: Path, **changes: object) -> Path:
    doc = yaml.safe_load(bucket_config.read_text())
    doc["storage"]["s3"].update(changes)
    path = tmp_path / "changed.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secretkey": "wrong-secret-key-0000000000000000000000"}, "access denied"),
        ({"bucket": "no-such-bucket-here"}, "does not exist"),
        ({"regionendpoint": "http://127.0.0.1:9"}, "cannot reach http://127.0.0.1:9"),
    ],
    ids=["wrong-secret", "missing-bucket", "unreachable"],
)
def test_an_unreadable_bucket_is_one_line_and_exit_3(
    tmp_path: Path, bucket_config: Path, changes: dict[str, object], message: str
) -> None:
    config = config_with(tmp_path, bucket_config, **changes)
    for command in (("ls",), ("gc", "--dry-run"), ("verify",)):
        started = time.monotonic()
        code, out = regtool(*command, "--config", str(config))
        assert code == 3, out
        assert message in out and "Traceback" not in out, out
        assert len(out.strip().splitlines()) <= 2, out  # the error and at most a hint
        assert time.monotonic() - started < 20


def test_gc_and_verify_stream_nested_repositories_junk_and_uploads_as_on_a_disk(
    rgw: Any, tmp_path: Path, monkeypatch
) -> None:
    """Repositories inside repositories (`centos/0b` lists before `centos`'s own `_layers`,
    `centos/sub` after), a folder holding only uploads (no repository) and junk beside a
    repository's folders: one object per window, and the plan is still the disk's (the
    uploads-only folder's stale upload purged, and the folder with it)."""
    from regtool.layout.v2 import paths
    from tests.conftest import copy_tree

    root = copy_tree(V2_FIXTURE, tmp_path / "root")
    repos = root / paths.REPOSITORIES
    for nested in ("centos/0b", "centos/sub"):
        copy_tree(repos / "busybox", repos / nested)
    upload = repos / "onlyuploads" / "_uploads" / "0b5e6c2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b"
    upload.mkdir(parents=True)
    (upload / "data").write_bytes(b"half a layer")
    (upload / "startedat").write_text("2015-01-01T00:00:00Z")
    (repos / "centos" / "_junk").mkdir()
    (repos / "centos" / "_junk" / "notes").write_text("mine")
    (repos / "centos" / "_layers" / "sha256" / "notes").write_text("mine")
    orphan_digest = "sha256:" + hashlib.sha256(b"nobody").hexdigest()
    orphan = root / paths.blob_data(orphan_digest)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"nobody")
    config = s3load.write_config(rgw, _bucket_of(rgw, root), PREFIX, tmp_path / "s3.yml")
    monkeypatch.setattr(bulk, "WINDOW_KEYS", 1)
    local, remote = both(root, config, "verify")
    assert remote == local and any(p["kind"] == "junk-file" for p in local["problems"])
    for args in (("ls",), ("ls", "--repos"), ("layers", "centos/sub:latest")):
        local, remote = both(root, config, *args)
        assert remote == local
    for untagged in ((), ("--delete-untagged",)):
        args = ("gc", "--dry-run", "--grace", "0", "--upload-age", "0", *untagged)
        local, remote = both(root, config, *args)
        assert remote == local
        ids = {(e["kind"], e["id"]) for e in local["delete"]}
        assert ("blob", orphan_digest) in ids
        assert ("upload", upload.name) in ids  # what a push that died left: purged
        assert ("repository", "onlyuploads") in ids


def _bucket_of(rgw: Any, root: Path) -> str:
    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, root, PREFIX)
    return bucket
