"""gc on a bucket whose endpoint dies mid-run: nothing half-deleted breaks a tag, and a
second run finishes the job. The endpoint dies for real: a TCP relay in front of Ceph RGW
stops relaying after a number of delete requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regtool.cli.app import app
from tests.conftest import V2_FIXTURE
from tests.support.relay import Relay
from tests.support.rgw import new_bucket, s3_client, s3load

PREFIX = "/registry"
EXPECTED = json.loads((V2_FIXTURE / "EXPECTED.json").read_text())


def dies_after(deletes: int):
    """A Relay watch that lets `deletes` delete requests through and dies at the next."""
    left = [deletes]

    def watch(data: bytes) -> bool:
        if data.startswith(b"DELETE ") or b"?delete" in data.split(b"\r\n")[0]:
            left[0] -= 1
        return left[0] >= 0

    return watch


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("deletes", [0, 3, 6])
def test_gc_interrupted_by_a_dead_endpoint_breaks_no_tag_and_a_rerun_finishes(
    rgw: Any, tmp_path: Path, deletes: int
) -> None:
    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, V2_FIXTURE, PREFIX)
    direct = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "direct.yml")
    code, out = regtool(
        "gc", "--dry-run", "--grace", "0", "-m", "--config", str(direct), "-f", "json"
    )
    planned = json.loads(out)["delete"]
    assert code == 0 and len(planned) >= 5
    with Relay(rgw.endpoint, dies_after(deletes)) as relay:
        doc = yaml.safe_load(direct.read_text())
        doc["storage"]["s3"]["regionendpoint"] = f"http://127.0.0.1:{relay.port}"
        dying = tmp_path / "dying.yml"
        dying.write_text(yaml.safe_dump(doc))
        code, out = regtool("gc", "--yes", "--grace", "0", "-m", "--config", str(dying))
        assert relay.dead.is_set()  # it died mid-run, not when the test ended
    assert code != 0 and "Traceback" not in out, out
    # every tag still resolves to a readable manifest with all its blobs
    code, out = regtool("verify", "--config", str(direct), "-f", "json")
    errors = [p for p in json.loads(out)["problems"] if p["severity"] == "error"]
    assert errors == [], errors
    code, out = regtool("ls", "--config", str(direct), "-f", "json")
    tags = {(r["repository"], r["tag"]) for r in json.loads(out) if not r["warnings"]}
    assert tags == {(repo, tag) for repo, names in EXPECTED["tags"].items() for tag in names}
    code, out = regtool("gc", "--yes", "--grace", "0", "-m", "--config", str(direct))
    assert code == 0, out
    code, out = regtool(
        "gc", "--dry-run", "--grace", "0", "-m", "--config", str(direct), "-f", "json"
    )
    assert json.loads(out)["delete"] == []
    # the tags are those of the tree, untouched (gc -m took the untagged manifests, so what
    # they held back is exclusive now: EXCLUSIVE is compared apart)
    code, out = regtool("ls", "--config", str(direct), "-f", "json")
    _, local_out = regtool("ls", "--root", str(V2_FIXTURE), "-f", "json")
    after, before = json.loads(out), json.loads(local_out)
    assert [{**r, "exclusive": 0} for r in after] == [{**r, "exclusive": 0} for r in before]
    assert all(a["exclusive"] >= b["exclusive"] for a, b in zip(after, before, strict=True))


def test_deleting_a_repository_prefix_leaves_a_longer_name_alone(rgw: Any, tmp_path: Path) -> None:
    """Object-store prefixes are matched by whole path segments: removing `busy` must not
    touch `busybox` (a key-prefix delete would)."""
    from regtool.layout.store import open_storage

    bucket = new_bucket(s3_client(rgw))
    s3load.load_tree(rgw, bucket, V2_FIXTURE, PREFIX)
    config = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "s3.yml")
    store = open_storage(config=config, writable=True, bulk=False)
    before = sum(1 for _ in store.driver.walk("docker/registry/v2/repositories/busybox"))
    store.driver.delete("docker/registry/v2/repositories/busy")
    after = sum(1 for _ in store.driver.walk("docker/registry/v2/repositories/busybox"))
    assert before == after > 0
