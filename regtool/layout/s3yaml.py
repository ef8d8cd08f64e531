"""distribution's `storage.s3` section, read into the object-store driver's settings.

Every key distribution 2.8.2 documents is either honoured or refused here, at start, with the
key named: a setting that would silently change what the registry stores is never dropped.
"""

from __future__ import annotations

from typing import Any

from regtool.errors import UsageError
from regtool.storage.objectstore import S3Settings

MIN_CHUNK = 5 * 1024 * 1024
DEFAULT_CHUNK = 10 * 1024 * 1024
# distribution's defaults for its server-side copy of big blobs; other values are refused
MULTIPART_COPY_DEFAULTS = {
    "multipartcopychunksize": 32 * 1024 * 1024,
    "multipartcopymaxconcurrency": 100,
    "multipartcopythresholdsize": 32 * 1024 * 1024,
}
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "NONE")
KNOWN = frozenset(
    {
        "accesskey",
        "secretkey",
        "sessiontoken",
        "region",
        "regionendpoint",
        "forcepathstyle",
        "bucket",
        "encrypt",
        "keyid",
        "secure",
        "skipverify",
        "v4auth",
        "chunksize",
        "rootdirectory",
        "storageclass",
        "objectacl",
        "useragent",
        "usedualstack",
        "accelerate",
        "loglevel",
        *MULTIPART_COPY_DEFAULTS,
    }
)


class S3ConfigError(UsageError):
    """A `storage.s3` key regtool cannot honour."""


def _refuse(where: str, key: str, why: str, hint: str | None = None) -> S3ConfigError:
    return S3ConfigError(f"config {where}: storage.s3.{key} {why}", hint=hint)


def _flag(section: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = section.get(key, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _refuse(where, key, f"must be true or false, not {value!r}")


def _text(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int):
        raise _refuse(where, key, "must be a string")
    return str(value)


def _number(section: dict[str, Any], key: str, default: int, where: str) -> int:
    value = section.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _refuse(where, key, f"must be a number of bytes, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise _refuse(where, key, f"must be a number of bytes, not {value!r}") from None


def parse_s3(section: object, where: str) -> S3Settings:
    """S3Settings from a `storage.s3` mapping; `where` names the config file in errors."""
    if not isinstance(section, dict):
        raise S3ConfigError(f"config {where}: storage.s3 must be a mapping")
    for key in section:
        if key not in KNOWN:
            raise _refuse(where, str(key), "is not a key of distribution's s3 driver")
    bucket = _text(section, "bucket", where)
    if bucket is None:
        raise _refuse(where, "bucket", "is required")
    region = _text(section, "region", where)
    endpoint = _text(section, "regionendpoint", where)
    if region is None:
        raise _refuse(where, "region", "is required (us-east-1 for most S3-compatible stores)")
    if not _flag(section, "v4auth", True, where):
        raise _refuse(
            where, "v4auth", "false is not supported: regtool signs with AWS Signature V4 only"
        )
    for key in ("usedualstack", "accelerate"):
        if _flag(section, key, False, where):
            raise _refuse(where, key, "true is not supported", hint=f"remove {key} or set false")
    for key, default in MULTIPART_COPY_DEFAULTS.items():
        if _number(section, key, default, where) != default:
            raise _refuse(
                where,
                key,
                f"other than distribution's default ({default}) is not supported: regtool "
                "copies objects with the store's own server-side copy",
                hint=f"remove {key} from the config regtool reads",
            )
    acl = _text(section, "objectacl", where) or "private"
    if acl != "private":
        raise _refuse(
            where, "objectacl", f"{acl!r} is not supported: regtool writes private objects only"
        )
    storageclass = (_text(section, "storageclass", where) or "STANDARD").upper()
    if storageclass not in STORAGE_CLASSES:
        raise _refuse(where, "storageclass", f"must be one of {', '.join(STORAGE_CLASSES)}")
    chunksize = _number(section, "chunksize", DEFAULT_CHUNK, where)
    if chunksize < MIN_CHUNK:
        raise _refuse(where, "chunksize", f"must be at least {MIN_CHUNK} (5 MiB)")
    secure = _flag(section, "secure", True, where)
    if endpoint is not None and "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    root = _text(section, "rootdirectory", where) or ""
    return S3Settings(
        bucket=bucket,
        region=region,
        endpoint=endpoint,
        access_key=_text(section, "accesskey", where),
        secret_key=_text(section, "secretkey", where),
        session_token=_text(section, "sessiontoken", where),
        rootdirectory=root,
        secure=secure,
        skipverify=_flag(section, "skipverify", False, where),
        chunksize=chunksize,
        forcepathstyle=_flag(section, "forcepathstyle", endpoint is not None, where),
        encrypt=_flag(section, "encrypt", False, where),
        keyid=_text(section, "keyid", where),
        storageclass=None if storageclass == "NONE" else storageclass,
    )
