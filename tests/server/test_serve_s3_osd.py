"""A push into `regtool serve` on a 3-OSD Ceph cluster survives an OSD killed mid-push, and
the storage verifies clean afterwards (the store replicates; regtool must not trip over the
stall while Ceph marks the OSD down and re-peers)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from regtool.cli.app import app
from tests.server.conftest import skopeo, subprocess_server
from tests.support.ocitar import gzip_layer, oci_dir_of
from tests.support.rgw import new_bucket, rgwlib, running_cluster, s3_client, s3load

LAYERS = 20
LAYER_BYTES = 3_000_000  # incompressible: ~60 MB pushed in all


def objects_below(client: object, bucket: str, prefix: str) -> int:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return int(listing.get("KeyCount", 0))


def test_a_push_survives_an_osd_killed_mid_push_and_verifies_clean(tmp_path: Path) -> None:
    image = tmp_path / "oci"
    oci_dir_of(image, "v1", [gzip_layer(f"layer-{i}", LAYER_BYTES) for i in range(LAYERS)])
    with running_cluster(osds=3) as cluster:
        client = s3_client(cluster)
        bucket = new_bucket(client)
        config = s3load.write_config(cluster, bucket, "/registry", tmp_path / "s3.yml")
        with subprocess_server(None, config=config, log=tmp_path / "serve.log") as served:
            failure: list[BaseException] = []

            def push() -> None:
                try:
                    skopeo(
                        "copy",
                        "--dest-tls-verify=false",
                        f"oci:{image}:v1",
                        f"docker://{served.host}/app:v1",
                        timeout=300,
                    )
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failure.append(exc)

            pusher = threading.Thread(target=push)
            pusher.start()
            deadline = time.monotonic() + 60
            while objects_below(client, bucket, "registry/docker/registry/v2/blobs/") < 1:
                assert pusher.is_alive() and time.monotonic() < deadline, "push ended early"
                time.sleep(0.05)
            rgwlib.kill(cluster.dir, "osd.1")  # mid-push: some layers stored, most not
            stored_at_kill = objects_below(client, bucket, "registry/docker/registry/v2/blobs/")
            assert pusher.is_alive() and stored_at_kill < LAYERS + 1
            assert not rgwlib.alive(cluster.pids["osd.1"])
            pusher.join(320)
            assert not failure, failure
            pulled = tmp_path / "pulled"
            skopeo(
                "copy", "--src-tls-verify=false", f"docker://{served.host}/app:v1", f"dir:{pulled}"
            )
        for item in pulled.iterdir():
            if len(item.name) == 64:
                assert hashlib.sha256(item.read_bytes()).hexdigest() == item.name
        assert sum(1 for item in pulled.iterdir() if len(item.name) == 64) == LAYERS + 1
        result = CliRunner().invoke(app, ["verify", "--config", str(config), "-f", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["problems"] == [] and report["checked"]["tags"] == 1
