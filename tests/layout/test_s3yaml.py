"""storage.s3 of a distribution config: every key honoured or refused at start, by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from regtool.errors import UsageError
from regtool.layout.detect import choose_root, load_config

BASE = {
    "accesskey": "AK",
    "secretkey": "SK",
    "region": "us-east-1",
    "regionendpoint": "http://127.0.0.1:8000",
    "bucket": "registry",
    "secure": False,
    "v4auth": True,
    "rootdirectory": "/prefix",
}


def write(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"version": 0.1, "storage": {"s3": {**BASE, **extra}}}))
    return path


def test_a_reference_style_s3_config_reads_into_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, chunksize=6 * 1024 * 1024, storageclass="NONE"))
    s3 = config.s3
    assert config.root is None and s3 is not None
    assert (s3.bucket, s3.region, s3.endpoint) == ("registry", "us-east-1", "http://127.0.0.1:8000")
    assert (s3.access_key, s3.secret_key, s3.rootdirectory) == ("AK", "SK", "/prefix")
    assert not s3.secure and s3.forcepathstyle and s3.chunksize == 6 * 1024 * 1024
    assert s3.storageclass is None and not s3.encrypt


def test_credentials_may_come_from_the_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, accesskey=None, secretkey=None))
    assert config.s3 is not None and config.s3.access_key is None


def test_an_endpoint_without_scheme_follows_secure(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, regionendpoint="s3.example:9000", secure=True))
    assert config.s3 is not None and config.s3.endpoint == "https://s3.example:9000"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"v4auth": False}, "storage.s3.v4auth false is not supported"),
        ({"bucket": None}, "storage.s3.bucket is required"),
        ({"region": None}, "storage.s3.region is required"),
        ({"chunksize": 1024}, "storage.s3.chunksize must be at least"),
        ({"objectacl": "public-read"}, "storage.s3.objectacl 'public-read' is not supported"),
        ({"multipartcopychunksize": 1 << 20}, "storage.s3.multipartcopychunksize other than"),
        ({"storageclass": "GLACIER"}, "storage.s3.storageclass must be one of"),
        ({"accelerate": True}, "storage.s3.accelerate true is not supported"),
        ({"secure": "maybe"}, "storage.s3.secure must be true or false"),
        ({"bucketname": "x"}, "storage.s3.bucketname is not a key of distribution's s3 driver"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(
    tmp_path: Path, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        load_config(write(tmp_path, **extra))


def test_distributions_default_multipart_copy_values_are_accepted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, multipartcopychunksize=33554432, objectacl="private"))
    assert config.s3 is not None


def test_commands_that_need_a_local_folder_say_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="s3://registry/prefix; this command works on a local"):
        choose_root(None, write(tmp_path))
