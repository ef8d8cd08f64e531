#!/usr/bin/env python3
"""Upload a local registry storage tree into an S3 bucket, laid out as distribution's s3 driver.

distribution 2.8.2's s3 driver stores the file `<path>` of its storage under the key
`<rootdirectory without its leading slash><path>`, so the local file
`ROOT/docker/registry/v2/blobs/...` becomes `PREFIX/docker/registry/v2/blobs/...` (or
`docker/registry/v2/...` with no rootdirectory). Only regular files under `ROOT/docker/` are
uploaded: S3 has no folders (an empty folder of the tree has no object) and links are skipped
and counted. The bucket is created if missing. Uploads run as asyncio tasks of obstore with a
bounded number in flight (9.7k small objects take seconds; boto3 on 32 threads takes ~34 s).

    python scripts/s3load.py --endpoint http://127.0.0.1:PORT --bucket B --root TREE \\
        [--prefix /registry] [--config OUT.yml] [--inflight 64]

Keys come from --access-key/--secret-key, else $S3LOAD_ACCESS_KEY/$S3LOAD_SECRET_KEY, else the
test keys of scripts/rgw.py. From Python:

    load_tree(cluster, "bucket", Path("/tmp/tree"), "/registry")   # cluster: rgw.Cluster
    write_config(cluster, "bucket", "/registry", Path("/tmp/c.yml"))
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INFLIGHT = 64
TOP = "docker"  # the one folder of a storage root that distribution reads
DEFAULT_ACCESS_KEY = "RGWTESTACCESSKEY0001"  # scripts/rgw.py's test user
DEFAULT_SECRET_KEY = "rgwtestsecretkey0000000000000000000000001"


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom: the fields of scripts/rgw.py's Cluster that matter here."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


@dataclass(frozen=True)
class LoadResult:
    objects: int
    bytes: int
    skipped: tuple[str, ...]  # links and special files, relative to the tree's root
    seconds: float


class LoadError(RuntimeError):
    pass


def settings_of(source: Any) -> S3Settings:
    """S3Settings from an rgw Cluster, an S3Settings, or a mapping with the same keys."""
    if isinstance(source, S3Settings):
        return source
    if isinstance(source, Mapping):
        get = source.get
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(source, name, default)

    try:
        return S3Settings(
            endpoint=str(get("endpoint")),
            access_key=str(get("access_key")),
            secret_key=str(get("secret_key")),
            region=str(get("region", None) or "us-east-1"),
        )
    except (TypeError, KeyError) as e:  # pragma: no cover - a wrong argument
        raise LoadError(f"not S3 settings: {source!r}") from e


def key_prefix(rootdirectory: str) -> str:
    """The key of the storage path "/x" is key_prefix(root) + "x" (as the s3 driver builds it)."""
    trimmed = rootdirectory.strip("/")
    if trimmed and any(part in ("", ".", "..") for part in trimmed.split("/")):
        # obstore would quietly normalise such a key; the s3 driver would not
        raise LoadError(f"rootdirectory {rootdirectory!r} has an empty, '.' or '..' component")
    return f"{trimmed}/" if trimmed else ""


def plan(root: Path, rootdirectory: str) -> tuple[list[tuple[Path, str]], list[str]]:
    """(local file, key) for every regular file under root/docker, and the skipped entries."""
    prefix = key_prefix(rootdirectory)
    top = root / TOP
    if not (top / "registry" / "v2").is_dir():
        raise LoadError(f"{root} holds no docker/registry/v2 folder")
    files: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for folder, dirs, names in os.walk(top):  # never follows links to folders
        base = Path(folder)
        for name in dirs:
            if (base / name).is_symlink():
                skipped.append(str((base / name).relative_to(root)))
        for name in names:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                skipped.append(rel)
            else:
                files.append((path, prefix + rel))
    files.sort(key=lambda item: item[1])
    return files, sorted(skipped)


def boto3_client(s: S3Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s.endpoint,
        region_name=s.region,
        aws_access_key_id=s.access_key,
        aws_secret_access_key=s.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def ensure_bucket(s: S3Settings, bucket: str) -> bool:
    """Create the bucket unless it exists; True when it was created."""
    from botocore.exceptions import ClientError

    client = boto3_client(s)
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=bucket)
    return True


def obstore_store(s: S3Settings, bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=s.endpoint,
        region=s.region,
        access_key_id=s.access_key,
        secret_access_key=s.secret_key,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


async def _put_all(store: Any, files: list[tuple[Path, str]], inflight: int) -> None:
    import obstore

    sem = asyncio.Semaphore(inflight)

    async def put(path: Path, key: str) -> None:
        async with sem:
            try:
                await obstore.put_async(store, key, path)
            except Exception as e:
                raise LoadError(f"PUT {key}: {e}") from e

    tasks = [asyncio.create_task(put(path, key)) for path, key in files]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def load_tree(
    cluster_or_settings: Any,
    bucket: str,
    root_dir: Path | str,
    prefix: str = "",
    *,
    inflight: int = INFLIGHT,
) -> LoadResult:
    """Upload every regular file of root_dir/docker to bucket under the rootdirectory prefix."""
    s = settings_of(cluster_or_settings)
    root = Path(root_dir)
    files, skipped = plan(root, prefix)
    began = time.perf_counter()
    ensure_bucket(s, bucket)
    asyncio.run(_put_all(obstore_store(s, bucket), files, max(1, inflight)))
    size = sum(path.stat().st_size for path, _ in files)
    return LoadResult(len(files), size, tuple(skipped), time.perf_counter() - began)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_doc(
    cluster_or_settings: Any, bucket: str, prefix: str, *, port: int | None = None
) -> dict[str, Any]:
    """A distribution 2.8.2 config reading the bucket (deletes enabled, loopback listener)."""
    s = settings_of(cluster_or_settings)
    rootdirectory = "/" + prefix.strip("/")
    s3: dict[str, Any] = {
        "accesskey": s.access_key,
        "secretkey": s.secret_key,
        "region": "us-east-1",
        "regionendpoint": s.endpoint,
        "bucket": bucket,
        "secure": False,
        "v4auth": True,
    }
    if rootdirectory != "/":
        s3["rootdirectory"] = rootdirectory
    return {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"s3": s3, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port or free_port()}"},
    }


def write_config(
    cluster_or_settings: Any, bucket: str, prefix: str, path: Path | str, *, port: int | None = None
) -> Path:
    """Write config_doc(...) as YAML to path (mode 0600: it holds the secret key)."""
    out = Path(path)
    text = yaml.safe_dump(
        config_doc(cluster_or_settings, bucket, prefix, port=port), sort_keys=False
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--root", required=True, type=Path, help="folder holding docker/")
    parser.add_argument("--prefix", default="", help="the rootdirectory, e.g. /registry")
    parser.add_argument("--access-key", default=os.environ.get("S3LOAD_ACCESS_KEY"))
    parser.add_argument("--secret-key", default=os.environ.get("S3LOAD_SECRET_KEY"))
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--inflight", type=int, default=INFLIGHT)
    parser.add_argument("--config", type=Path, help="also write a distribution config here")
    args = parser.parse_args(argv)
    s = S3Settings(
        args.endpoint,
        args.access_key or DEFAULT_ACCESS_KEY,
        args.secret_key or DEFAULT_SECRET_KEY,
        args.region,
    )
    try:
        result = load_tree(s, args.bucket, args.root, args.prefix, inflight=args.inflight)
    except (LoadError, OSError) as e:
        print(f"s3load: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # botocore/obstore errors: one line, no traceback
        print(
            f"s3load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            file=sys.stderr,
        )
        return 3
    rate = result.objects / result.seconds if result.seconds else 0.0
    print(
        f"uploaded {result.objects} objects ({result.bytes} bytes) to s3://{args.bucket}/"
        f"{key_prefix(args.prefix)} in {result.seconds:.2f} s ({rate:,.0f} objects/s)"
    )
    for rel in result.skipped:
        print(f"skipped (not a regular file): {rel}", file=sys.stderr)
    if args.config:
        write_config(s, args.bucket, args.prefix, args.config)
        print(f"config: {args.config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
