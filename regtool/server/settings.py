"""What `regtool serve` takes from distribution's config.yml, and what makes it refuse to start.

A key serve cannot honour is refused (UsageError naming it) when going on without it would
serve something else than what the file asks for in a way that matters: an auth scheme
(ignoring it serves without auth), TLS options, storage drivers other than filesystem and
s3, a unix socket, a
path prefix, proxy (pull-through) mode, manifest URL policies, notifications (events
that would silently stop). Keys that only tune distribution's own machinery (caches,
redis, health checks, reporting, middleware that redirects to a CDN) are reported in one
warning line. `http.secret` and `http.relativeurls` are accepted silently: the secret
signs upload state that distribution hands to clients, while regtool keeps upload state
on the server; and regtool always answers relative `Location`s, which clients accept.

Our own settings live in a `regtool:` section (distribution ignores unknown sections):
`maxconnections` (connections served at once), `idletimeout` (seconds, or `90s`,
`2m`, `500ms`), `gc` (background gc: `interval`, `grace`, `deleteuntagged`, `uploadage`;
durations as `regtool gc` takes them: `30m`, `2h`, `1h30m`), `metricsaddr` (HOST:PORT of a
separate /metrics listener) and `logformat` (`plain` or `json`).
`storage.maintenance.uploadpurging` (`enabled`, `age`, `interval`, `dryrun`) is honoured
as distribution does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regtool.errors import UsageError
from regtool.layout.detect import RegistryConfig
from regtool.model.duration import parse_duration

MINIMUM_TLS = ("tls1.2", "tls1.3")  # what serve can offer as a floor (Python's own floor: 1.2)
_DURATION = re.compile(r"([0-9]{1,9})(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_FIELD_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")

QUIET = frozenset({"version", "log", "loglevel"})  # how distribution logs: nothing to do here
WARNED = ("redis", "health", "reporting", "compatibility", "catalog", "middleware")
HTTP_USED = frozenset({"addr", "net", "prefix", "tls", "headers", "secret", "relativeurls"})
STORAGE_SECTIONS = frozenset({"filesystem", "s3", "delete", "maintenance", "cache"})
STORAGE_WARNED = ("redirect", "tag")  # redirect is honoured on a bucket (presigned URLs)
TLS_USED = frozenset({"certificate", "key", "minimumtls"})
REGTOOL_KEYS = frozenset({"maxconnections", "idletimeout", "gc", "metricsaddr", "logformat"})
GC_KEYS = frozenset({"interval", "grace", "deleteuntagged", "uploadage"})
PURGE_KEYS = frozenset({"enabled", "age", "interval", "dryrun"})
LOG_FORMATS = ("plain", "json")


@dataclass(frozen=True, slots=True)
class GcSettings:
    """regtool.gc: the background gc (no interval: none runs)."""

    interval: float | None = None
    grace: float | None = None
    delete_untagged: bool | None = None
    upload_age: float | None = None


@dataclass(frozen=True, slots=True)
class PurgeSettings:
    """storage.maintenance.uploadpurging (None: the key is not set)."""

    enabled: bool | None = None
    age: float | None = None
    interval: float | None = None
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What --config contributes to `regtool serve` (command-line options win over it)."""

    root: Path | None = None
    addr: str | None = None
    cert: Path | None = None
    key: Path | None = None
    minimum_tls: str | None = None  # "tls1.2" or "tls1.3"
    htpasswd: Path | None = None
    realm: str | None = None
    delete: bool = False  # distribution's default: storage.delete.enabled is false
    read_only: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # http.headers, sent with every answer
    max_connections: int | None = None
    idle_timeout: float | None = None
    ignored: tuple[str, ...] = ()  # keys read and not acted on (worth one warning)
    bucket: bool = False  # storage.s3: the storage is opened from the config, not a root
    redirect: bool = True  # storage.redirect.disable unset: blob GETs redirect (on a bucket)
    gc: GcSettings = GcSettings()
    purge: PurgeSettings = PurgeSettings()
    metrics_addr: str | None = None
    log_format: str | None = None


def serve_settings(config: RegistryConfig) -> ServeSettings:
    """The settings of a loaded config.yml; UsageError for what serve cannot honour."""
    return _Reader(config).settings()


class _Reader:
    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.ignored: list[str] = []

    def refuse(self, key: str, why: str, hint: str | None = None) -> UsageError:
        return UsageError(f"config {self.config.path}: {key}: {why}", hint=hint)

    def section(self, doc: dict[str, Any], key: str, dotted: str) -> dict[str, Any]:
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.refuse(dotted, "must be a mapping")
        return value

    def path(self, value: object) -> Path | None:
        if value is None or value == "":
            return None
        given = Path(str(value))
        return given if given.is_absolute() else self.config.path.parent / given

    def settings(self) -> ServeSettings:
        raw = self.config.raw
        for name in raw:
            if name not in QUIET and name not in ("storage", "http", "auth", "regtool"):
                self._top_level(raw, str(name))
        storage = self.section(raw, "storage", "storage")
        self._storage(storage)
        redirect = self.section(storage, "redirect", "storage.redirect")
        http = self.section(raw, "http", "http")
        self._http(http)
        cert, key, minimum = self._tls(self.section(http, "tls", "http.tls"))
        htpasswd, realm = self._auth(self.section(raw, "auth", "auth"))
        ours = self.section(raw, "regtool", "regtool")
        max_connections, idle_timeout = self._regtool(ours)
        return ServeSettings(
            root=self.config.root,
            addr=str(http["addr"]) if http.get("addr") else None,
            cert=cert,
            key=key,
            minimum_tls=minimum,
            htpasswd=htpasswd,
            realm=realm,
            delete=self.config.delete_enabled,
            read_only=self.config.readonly,
            headers=self._headers(http.get("headers")),
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            ignored=tuple(self.ignored),
            bucket=self.config.s3 is not None,
            redirect=not self._flag(redirect, "disable", "storage.redirect.disable"),
            gc=self._gc(self.section(ours, "gc", "regtool.gc")),
            purge=self._purge(storage),
            metrics_addr=str(ours["metricsaddr"]) if ours.get("metricsaddr") else None,
            log_format=self._log_format(ours.get("logformat")),
        )

    def _flag(self, section: dict[str, Any], key: str, dotted: str) -> bool:
        value = section.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.refuse(dotted, f"must be true or false, not {value!r}")

    def _top_level(self, raw: dict[str, Any], key: str) -> None:
        value = raw[key]
        if key == "notifications":
            endpoints = self.section(raw, key, key).get("endpoints") or []
            if not isinstance(endpoints, list):
                raise self.refuse("notifications.endpoints", "must be a list")
            live = [e for e in endpoints if not (isinstance(e, dict) and e.get("disabled"))]
            if live:
                raise self.refuse(
                    "notifications.endpoints",
                    "regtool serve sends no notifications; the events would silently stop",
                    hint="disable the endpoints (disabled: true) or remove the section",
                )
        elif key == "proxy":
            if value:
                raise self.refuse(
                    "proxy",
                    "regtool serve is no pull-through cache; it would serve a writable "
                    "registry instead",
                )
        elif key == "validation":
            self._validation(self.section(raw, key, key))
        elif key == "policy":
            if value:
                raise self.refuse("policy", "repository policies are not implemented")
        elif key in WARNED or value is not None:
            self.ignored.append(key)

    def _validation(self, validation: dict[str, Any]) -> None:
        manifests = self.section(validation, "manifests", "validation.manifests")
        urls = self.section(manifests, "urls", "validation.manifests.urls")
        if urls.get("allow") or urls.get("deny"):
            raise self.refuse(
                "validation.manifests.urls",
                "URL allow and deny lists are not implemented",
            )
        if validation:
            self.ignored.append("validation")

    def _storage(self, storage: dict[str, Any]) -> None:
        for key in storage:
            if key == "redirect" and self.config.s3 is not None:
                continue
            if key in STORAGE_WARNED:
                self.ignored.append(f"storage.{key}")
            elif key not in STORAGE_SECTIONS:
                raise self.refuse(
                    f"storage.{key}",
                    f"storage driver {key} is not supported (regtool serves the filesystem "
                    "and s3 drivers)",
                )

    def _http(self, http: dict[str, Any]) -> None:
        self.ignored.extend(f"http.{key}" for key in http if key not in HTTP_USED)
        net = http.get("net")
        if net not in (None, "", "tcp"):
            raise self.refuse(
                "http.net", f"{net!r} is not supported; regtool serve listens on TCP only"
            )
        prefix = http.get("prefix")
        if prefix not in (None, "", "/"):
            raise self.refuse(
                "http.prefix", f"{prefix!r} is not supported; regtool serves /v2/ at the root"
            )

    def _tls(self, tls: dict[str, Any]) -> tuple[Path | None, Path | None, str | None]:
        for name, value in tls.items():
            if name not in TLS_USED and value not in (None, "", [], {}):
                raise self.refuse(
                    f"http.tls.{name}",
                    "not supported by regtool serve (it honours certificate, key and minimumtls)",
                    hint="remove it, or put a TLS proxy in front that does it",
                )
        cert, key = self.path(tls.get("certificate")), self.path(tls.get("key"))
        if (cert is None) != (key is None):
            raise self.refuse("http.tls", "certificate and key go together")
        minimum = tls.get("minimumtls")
        if minimum in (None, ""):
            return cert, key, None
        if str(minimum).lower() not in MINIMUM_TLS:
            raise self.refuse(
                "http.tls.minimumtls",
                f"{minimum!r} is not supported; regtool serve offers TLS 1.2 or newer "
                "(use tls1.2 or tls1.3)",
            )
        return cert, key, str(minimum).lower()

    def _auth(self, auth: dict[str, Any]) -> tuple[Path | None, str | None]:
        for key in auth:
            if key != "htpasswd":
                raise self.refuse(
                    f"auth.{key}",
                    "not supported by regtool serve (it honours auth.htpasswd only); "
                    "refusing to serve without the authentication the file asks for",
                    hint="use auth.htpasswd (`regtool htpasswd FILE USER` makes the file)",
                )
        if "htpasswd" not in auth:
            return None, None
        htpasswd = self.section(auth, "htpasswd", "auth.htpasswd")
        path = self.path(htpasswd.get("path"))
        if path is None:
            raise self.refuse("auth.htpasswd.path", "missing: the htpasswd file to check")
        realm = htpasswd.get("realm")
        return path, str(realm) if realm else None

    def _headers(self, value: object) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.refuse("http.headers", "must be a mapping of names to lists of values")
        headers = []
        for name, values in value.items():
            items = values if isinstance(values, list) else [values]
            text = ", ".join(str(v) for v in items)
            if not _FIELD_NAME.fullmatch(str(name)) or any(c in text for c in "\r\n\0"):
                raise self.refuse(f"http.headers.{name}", "not a valid header")
            headers.append((str(name), text))
        return tuple(headers)

    def _regtool(self, section: dict[str, Any]) -> tuple[int | None, float | None]:
        for key in section:
            if key not in REGTOOL_KEYS:
                raise self.refuse(
                    f"regtool.{key}", f"unknown key (known: {', '.join(sorted(REGTOOL_KEYS))})"
                )
        limit = section.get("maxconnections")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise self.refuse("regtool.maxconnections", "must be a whole number of at least 1")
        timeout = section.get("idletimeout")
        return limit, None if timeout is None else self._duration(timeout)

    def _gc(self, section: dict[str, Any]) -> GcSettings:
        for key in section:
            if key not in GC_KEYS:
                raise self.refuse(
                    f"regtool.gc.{key}", f"unknown key (known: {', '.join(sorted(GC_KEYS))})"
                )
        interval = self._span(section, "interval", "regtool.gc")
        if interval is not None and interval <= 0:
            raise self.refuse("regtool.gc.interval", "must be longer than 0")
        untagged = section.get("deleteuntagged")
        return GcSettings(
            interval=interval,
            grace=self._span(section, "grace", "regtool.gc"),
            delete_untagged=None
            if untagged is None
            else self._flag(section, "deleteuntagged", "regtool.gc.deleteuntagged"),
            upload_age=self._span(section, "uploadage", "regtool.gc"),
        )

    def _purge(self, storage: dict[str, Any]) -> PurgeSettings:
        maintenance = self.section(storage, "maintenance", "storage.maintenance")
        dotted = "storage.maintenance.uploadpurging"
        section = self.section(maintenance, "uploadpurging", dotted)
        for key in section:
            if key not in PURGE_KEYS:
                raise self.refuse(
                    f"{dotted}.{key}", f"unknown key (known: {', '.join(sorted(PURGE_KEYS))})"
                )
        for key in ("age", "interval"):
            value = self._span(section, key, dotted)
            if value is not None and value <= 0:
                raise self.refuse(f"{dotted}.{key}", "must be longer than 0")
        return PurgeSettings(
            enabled=None
            if section.get("enabled") is None
            else self._flag(section, "enabled", f"{dotted}.enabled"),
            age=self._span(section, "age", dotted),
            interval=self._span(section, "interval", dotted),
            dry_run=None
            if section.get("dryrun") is None
            else self._flag(section, "dryrun", f"{dotted}.dryrun"),
        )

    def _span(self, section: dict[str, Any], key: str, dotted: str) -> float | None:
        """A duration as gc's flags take them (`30m`, `2h`, `168h`, `7d`); None when unset."""
        value = section.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.refuse(f"{dotted}.{key}", f"{value!r} is not a duration (e.g. 30m, 2h)")
        try:
            return parse_duration(str(value), f"{dotted}.{key}")
        except UsageError:
            raise self.refuse(
                f"{dotted}.{key}", f"{value!r} is not a duration (e.g. 30m, 2h, 168h)"
            ) from None

    def _log_format(self, value: object) -> str | None:
        if value is None:
            return None
        if str(value).lower() not in LOG_FORMATS:
            raise self.refuse("regtool.logformat", f"{value!r}: one of plain, json")
        return str(value).lower()

    def _duration(self, value: object) -> float:
        if type(value) in (int, float) and 0 < value <= 86400:  # type: ignore[operator]
            return float(value)  # type: ignore[arg-type]
        match = _DURATION.fullmatch(str(value).strip())
        seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
        if not 0 < seconds <= 86400:
            raise self.refuse(
                "regtool.idletimeout", f"{value!r} is not a duration (e.g. 60, 90s, 2m)"
            )
        return seconds
