"""gc on a bucket aborts multipart uploads left behind (a push or commit that died): they
are no object, yet their parts cost storage; fresh ones are kept (`--upload-age`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from regtool.cli.app import app
from tests.conftest import V2_FIXTURE
from tests.support.rgw import new_bucket, s3_client, s3load

PREFIX = "/registry"
KEY = "registry/docker/registry/v2/repositories/busybox/_uploads/{}/data"
PART = 5 * 1024 * 1024


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_gc_aborts_stale_multipart_uploads_with_their_exact_size(rgw: Any, tmp_path: Path) -> None:
    client = s3_client(rgw)
    bucket = new_bucket(client)
    s3load.load_tree(rgw, bucket, V2_FIXTURE, PREFIX)
    config = s3load.write_config(rgw, bucket, PREFIX, tmp_path / "s3.yml")
    key = KEY.format("0f0e0d0c-0b0a-4909-8807-060504030201")
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(PART))
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=2, Body=b"tail")

    code, out = regtool("gc", "--dry-run", "--grace", "0", "--config", str(config), "-f", "json")
    assert code == 0 and json.loads(out)["delete"] == []  # begun just now: kept

    args = ("--grace", "0", "--upload-age", "0", "--config", str(config), "-f", "json")
    code, out = regtool("gc", "--dry-run", *args)
    plan = json.loads(out)["delete"]
    assert code == 0 and plan == [
        {
            "kind": "multipart",
            "id": upload,
            "size": PART + 4,
            "path": key.removeprefix("registry/"),
        }
    ]
    code, out = regtool("gc", "--yes", *args)
    assert code == 0, out
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    code, out = regtool("gc", "--dry-run", *args)
    assert json.loads(out)["delete"] == []
