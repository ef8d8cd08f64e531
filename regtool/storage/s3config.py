"""S3 settings, the obstore store they make, and one-line messages for obstore's errors.

obstore is optional (the `s3` extra): it is imported inside functions only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from regtool.storage.driver import PathNotFound, StorageError

if TYPE_CHECKING:
    from obstore.store import S3Store

MIN_PART = 5 * 1024 * 1024
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY")
# Bounded retries: a dead endpoint fails in seconds, a 503 SlowDown is tried again.
RETRIES = 3
RETRY_WINDOW = timedelta(seconds=10)
CONNECT_TIMEOUT = "3s"
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)


@dataclass(frozen=True, slots=True)
class S3Settings:
    """distribution's `storage.s3` settings (the ones regtool honours)."""

    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None  # regionendpoint, e.g. http://127.0.0.1:8000
    access_key: str | None = None  # None: AWS_ACCESS_KEY_ID etc. from the environment
    secret_key: str | None = None
    session_token: str | None = None
    rootdirectory: str = ""  # "/prefix" or ""
    secure: bool = True  # False: plain http allowed
    skipverify: bool = False
    chunksize: int = 10 * 1024 * 1024  # multipart part size
    forcepathstyle: bool = True
    encrypt: bool = False
    keyid: str | None = None
    storageclass: str | None = None

    @property
    def prefix(self) -> str:
        """The key prefix of rootdirectory, without its slashes ("" for none)."""
        return self.rootdirectory.strip("/")

    def endpoint_url(self) -> str:
        return self.endpoint or f"https://s3.{self.region}.amazonaws.com"

    def location(self) -> str:
        """s3://bucket/rootdir, for messages."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def put_attributes(settings: S3Settings) -> dict[str, str]:
    """The put attributes of the settings; StorageError for settings regtool cannot honour."""
    where = settings.location()
    if settings.chunksize < MIN_PART:
        raise StorageError(where, f"chunksize {settings.chunksize} is below S3's 5 MiB parts")
    if settings.keyid and not settings.encrypt:
        raise StorageError(where, "keyid is set but encrypt is false: set encrypt: true")
    attributes: dict[str, str] = {}
    if settings.storageclass is not None:
        if settings.storageclass not in STORAGE_CLASSES:
            raise StorageError(
                where,
                f"storageclass {settings.storageclass!r} is not supported "
                f"(use {' or '.join(STORAGE_CLASSES)})",
            )
        attributes["Storage-Class"] = settings.storageclass
    return attributes


def make_store(settings: S3Settings, *, timeout: str, retries: int = RETRIES) -> S3Store:
    """The obstore S3Store of `settings`; refuses (StorageError) when obstore is missing."""
    try:
        from obstore.store import S3Store
    except ImportError:
        raise StorageError(
            settings.location(), "S3 storage needs obstore: pip install 'regtool[s3]'"
        ) from None
    config: dict[str, Any] = {"region": settings.region}
    endpoint = settings.endpoint
    if endpoint:
        endpoint = endpoint.rstrip("/")
        if not settings.forcepathstyle:  # virtual-hosted: the bucket goes in the host
            scheme, _, host = endpoint.partition("://")
            endpoint = f"{scheme}://{settings.bucket}.{host}"
        config["endpoint"] = endpoint
    config["virtual_hosted_style_request"] = not settings.forcepathstyle
    if settings.access_key is not None:
        config["access_key_id"] = settings.access_key
    if settings.secret_key is not None:
        config["secret_access_key"] = settings.secret_key
    if settings.session_token is not None:
        config["session_token"] = settings.session_token
    if settings.encrypt:
        config["server_side_encryption"] = "aws:kms" if settings.keyid else "AES256"
        if settings.keyid:
            config["sse_kms_key_id"] = settings.keyid
    allow_http = not settings.secure or (endpoint or "").startswith("http://")
    client: dict[str, Any] = {
        "allow_http": allow_http,
        "allow_invalid_certificates": settings.skipverify,
        "connect_timeout": CONNECT_TIMEOUT,
        "timeout": timeout,
    }
    retry: dict[str, Any] = {
        "max_retries": retries,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
        "retry_timeout": RETRY_WINDOW,
    }
    try:
        return S3Store(
            settings.bucket,
            prefix=settings.prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options=client,  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    except Exception as exc:
        raise StorageError(settings.location(), _first_line(str(exc))) from None


def status_of(exc: BaseException) -> int | None:
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    line = line.split("<?xml", 1)[0].rstrip(": ")  # no XML error body
    return line[:300] if line else "unknown error"


def translate(settings: S3Settings, path: str, exc: Exception) -> StorageError:
    """One StorageError line for an obstore exception met at `path`."""
    if isinstance(exc, FileNotFoundError):
        text = str(exc)
        if "NoSuchBucket" in text:
            return StorageError(path, f"bucket '{settings.bucket}' does not exist")
        return PathNotFound(path)
    text = str(exc)
    status = status_of(exc)
    found = _CODE.search(text)
    code = found.group(1) if found else None
    kind = type(exc).__name__
    if code == "NoSuchBucket":
        return StorageError(path, f"bucket '{settings.bucket}' does not exist")
    if (
        status in (401, 403)
        or code in _ACCESS_CODES
        or kind in ("PermissionDeniedError", "UnauthenticatedError")
    ):
        detail = f" ({code})" if code else ""
        return StorageError(path, f"access denied{detail}: check accesskey/secretkey")
    if status is None and ("error sending request" in text or "HttpError" in text):
        reason = _OS_MESSAGE.search(text)
        why = reason.group(1).lower() if reason else ("timed out" if "imed" in text else "")
        return StorageError(
            path, f"cannot reach {settings.endpoint_url()}: {why or 'connection failed'}"
        )
    if status is not None and status >= 500:
        return StorageError(
            path, f"{settings.endpoint_url()} answered {status}{f' {code}' if code else ''}"
        )
    if status is not None:
        return StorageError(path, f"S3 answered {status}{f' {code}' if code else ''}")
    return StorageError(path, _first_line(text))


def make_boto3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for the calls obstore does not offer (listing and aborting
    multipart uploads); refuses (StorageError) when boto3 is missing."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError:
        raise StorageError(
            settings.location(), "S3 storage needs boto3: pip install 'regtool[s3]'"
        ) from None
    endpoint = settings.endpoint.rstrip("/") if settings.endpoint else None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.region,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        aws_session_token=settings.session_token,
        verify=not settings.skipverify,
        config=Config(
            s3={"addressing_style": "path" if settings.forcepathstyle else "virtual"},
            retries={"max_attempts": RETRIES + 1, "mode": "standard"},
            connect_timeout=3,
            read_timeout=30,
        ),
    )
