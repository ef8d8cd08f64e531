"""A real S3 store for tests: the Ceph RGW cluster of ``scripts/rgw.py``, plus boto3 clients.

The process handling lives in ``scripts/rgw.py`` (benchmarks use it too); it is loaded
here by file path so that ``scripts/`` need not be a package.  Tests get a running cluster
through the session fixture ``rgw`` (tests/conftest.py); it starts on first use only.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.scripts import SCRIPTS, load_script

REPO_ROOT = SCRIPTS.parent

rgwlib = load_script("rgw")
Cluster = rgwlib.Cluster


def _log_tails(d: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted((d / "log").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


@contextmanager
def running_cluster(osds: int = 1) -> Iterator[Any]:
    """Start a cluster in a fresh temp folder; SIGKILL it and remove the folder on exit.

    If it does not start, raise RuntimeError with the tails of the daemons' logs
    (a missing package is a failure, not a skip: CI installs them).
    """
    d = Path(tempfile.mkdtemp(prefix="regtool-rgw-"))
    try:
        try:
            cluster = rgwlib.start(d, osds=osds)
        except rgwlib.RgwError as e:
            raise RuntimeError(f"Ceph RGW did not start: {e}\n{_log_tails(d)}") from e
        try:
            yield cluster
        finally:
            rgwlib.stop(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def s3_client(cluster: Any, *, access_key: str | None = None, secret_key: str | None = None):
    """A boto3 S3 client for the cluster (path-style), with its keys unless others are given."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=cluster.endpoint,
        region_name=cluster.region,
        aws_access_key_id=access_key or cluster.access_key,
        aws_secret_access_key=secret_key or cluster.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def new_bucket(client: Any) -> str:
    """Create a bucket with a unique name (the cluster is shared by the whole session)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


s3load = load_script("s3load")  # load_tree(cluster, bucket, tree, prefix), write_config(...)


def bucket_copy(cluster: Any, root: Path, folder: Path) -> Path:
    """A fresh bucket holding the v2 tree `root` (regular files only: a bucket has no links
    and no empty folders); returns the distribution config.yml that names it."""
    bucket = new_bucket(s3_client(cluster))
    s3load.load_tree(cluster, bucket, root, "/registry")
    return s3load.write_config(cluster, bucket, "/registry", folder / f"{bucket}.yml")


def bucket_objects(cluster: Any, config: Path) -> dict[str, tuple[int, str]]:
    """Every object of the bucket a config.yml names, with size and ETag: proof that
    nothing was written or deleted between two calls."""
    import yaml

    bucket = yaml.safe_load(config.read_text())["storage"]["s3"]["bucket"]
    found: dict[str, tuple[int, str]] = {}
    pages = s3_client(cluster).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for page in pages:
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item["ETag"])
    return found
