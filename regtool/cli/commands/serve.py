"""`regtool serve`: a registry endpoint over the storage, byte-compatible with registry:2."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from regtool.cli import output as out
from regtool.cli.errors import friendly_errors
from regtool.cli.options import ConfigOpt, RootOpt
from regtool.errors import OperationalError, UsageError
from regtool.layout.detect import DEFAULT_ROOT, load_config
from regtool.model.duration import parse_duration
from regtool.ops.gc import DEFAULT_GRACE, DEFAULT_UPLOAD_AGE, GcOptions
from regtool.server import tls as tlsmod
from regtool.server.accesslog import FORMATS
from regtool.server.activity import Activity
from regtool.server.app import App, open_context
from regtool.server.auth import Htpasswd
from regtool.server.handlers.context import Context, Options
from regtool.server.health import Health
from regtool.server.maintenance import GcSchedule, Maintenance, PurgeSchedule
from regtool.server.metrics import Metrics
from regtool.server.settings import ServeSettings, serve_settings
from regtool.server.stdlib import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    RegistryServer,
    serve_until_signalled,
)
from regtool.server.summary import Summaries

DEFAULT_ADDR = "127.0.0.1:5000"


class TlsMode(StrEnum):
    auto = "auto"
    off = "off"


class LogFormat(StrEnum):
    plain = "plain"
    json = "json"


@friendly_errors
def serve(
    root: RootOpt = None,
    config: ConfigOpt = None,
    addr: Annotated[
        str | None,
        typer.Option(
            "--addr",
            help=f"HOST:PORT to listen on (port 0: any free port) [default: {DEFAULT_ADDR}]",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse every write (405 UNSUPPORTED).")
    ] = False,
    no_delete: Annotated[
        bool, typer.Option("--no-delete", help="Refuse manifest, tag and blob DELETEs.")
    ] = False,
    tls: Annotated[
        TlsMode,
        typer.Option(
            "--tls",
            help="auto: make a local CA and a server certificate, kept "
            "beside the root in ROOT-tls/ (on an S3 bucket: beside the config, in "
            "CONFIG-tls/), and serve HTTPS.",
            case_sensitive=False,
        ),
    ] = TlsMode.off,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Key of --tls-cert.")] = None,
    tls_name: Annotated[
        list[str] | None,
        typer.Option("--tls-name", help="Extra host name or address for --tls auto (repeatable)."),
    ] = None,
    htpasswd: Annotated[
        Path | None,
        typer.Option(
            "--htpasswd",
            help="Require Basic auth from users of this htpasswd file "
            "(bcrypt; see `regtool htpasswd`).",
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            min=1,
            help="Connections served at once; more wait until one closes "
            f"(config: regtool.maxconnections) [default: {MAX_CONNECTIONS}]",
            show_default=False,
        ),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout",
            min=0.001,
            help="Seconds a connection may send nothing (between requests or mid-body) "
            f"before it is closed (config: regtool.idletimeout) [default: {IDLE_TIMEOUT:g}]",
            show_default=False,
        ),
    ] = None,
    gc_interval: Annotated[
        str | None,
        typer.Option(
            "--gc-interval",
            help="Run gc in the background every DURATION (30m, 6h) while serving "
            "(config: regtool.gc.interval) [default: never]",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option(
            "--grace",
            help="Background gc keeps anything written this recently, as `regtool gc "
            "--grace` (config: regtool.gc.grace) [default: 1h]",
            show_default=False,
        ),
    ] = None,
    delete_untagged: Annotated[
        bool,
        typer.Option(
            "--delete-untagged",
            help="Background gc also drops manifests no tag reaches, as `regtool gc "
            "--delete-untagged` (config: regtool.gc.deleteuntagged).",
        ),
    ] = False,
    upload_age: Annotated[
        str | None,
        typer.Option(
            "--upload-age",
            help="Background gc removes uploads untouched this long (config: "
            "regtool.gc.uploadage) [default: 24h]",
            show_default=False,
        ),
    ] = None,
    upload_purging: Annotated[
        bool | None,
        typer.Option(
            "--upload-purging/--no-upload-purging",
            help="Remove upload sessions older than --upload-purge-age, at start-up and every "
            "--upload-purge-interval (config: storage.maintenance.uploadpurging.enabled) "
            "[default: on]",
            show_default=False,
        ),
    ] = None,
    upload_purge_age: Annotated[
        str | None,
        typer.Option(
            "--upload-purge-age",
            help="Age of upload sessions purged (config: ...uploadpurging.age) [default: 168h]",
            show_default=False,
        ),
    ] = None,
    upload_purge_interval: Annotated[
        str | None,
        typer.Option(
            "--upload-purge-interval",
            help="Time between purges (config: ...uploadpurging.interval) [default: 24h]",
            show_default=False,
        ),
    ] = None,
    upload_purge_dry_run: Annotated[
        bool,
        typer.Option(
            "--upload-purge-dry-run",
            help="Log the sessions purging would remove; remove none (config: "
            "...uploadpurging.dryrun).",
        ),
    ] = False,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            help="Serve /metrics on this HOST:PORT of its own, without auth, instead of "
            "beside the API behind its auth (config: regtool.metricsaddr)",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="Access log lines: plain, or json (one object per line; config: "
            "regtool.logformat) [default: plain]",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the storage as a registry (OCI distribution API) that docker, podman,
    skopeo and oras push to and pull from.

    The first output line is always `listening on http://HOST:PORT` (https with TLS).
    With --config, keys serve cannot honour make it refuse to start (exit 2): auth other
    than htpasswd, TLS options other than certificate/key/minimumtls, other storage
    drivers, proxy mode, notifications; deletes follow storage.delete.enabled (off unless
    set). Without --config, deletes are allowed unless --no-delete.
    With --config naming an S3 bucket (storage.s3), it serves the bucket; several
    instances may serve one bucket (upload sessions live in the bucket), and blob GETs
    redirect (307) to presigned URLs unless storage.redirect.disable is true.
    A missing root is created as an empty v2 storage. On a legacy v1 storage the v1 read endpoints
    (/v1/search, tags, image json/ancestry/layer) work, v2 reads answer NAME_UNKNOWN and
    v2 writes 405 UNSUPPORTED (run `regtool migrate` first). One access-log line per
    request goes to stderr. Ctrl-C or SIGTERM stops it after the requests in flight finish.
    A browser opening the server's URL gets a read-only web page (same credentials as
    the API): what is stored, what it costs, what shares what (`/ui/`).

    Operations: with --gc-interval, gc runs in the background (one run at a time, each
    logged) while pushes and pulls go on; on a bucket served by several instances, give it
    to one. Upload sessions older than a week are purged at start-up and daily. GET
    /healthz answers 200 or 503 without auth; GET /metrics gives Prometheus metrics.

    Example:

        regtool serve --root /var/lib/registry --addr 0.0.0.0:5000 --tls auto
    """
    settings = _settings(config)
    host, port = parse_addr(addr or settings.addr or DEFAULT_ADDR)
    cert, key = tls_cert or settings.cert, tls_key or settings.key
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    options = Options(
        read_only=read_only or settings.read_only,
        delete_enabled=not no_delete and settings.delete,
        redirect=settings.redirect,
    )
    schedule = _gc_schedule(settings, gc_interval, grace, delete_untagged, upload_age)
    purge = _purge_schedule(
        settings, upload_purging, upload_purge_age, upload_purge_interval, upload_purge_dry_run
    )
    fmt = str(log_format.value if log_format is not None else settings.log_format or "plain")
    assert fmt in FORMATS
    metrics_at = metrics_addr or settings.metrics_addr
    metrics_host = parse_addr(metrics_at, "--metrics-addr") if metrics_at else None
    activity = Activity()
    created: Path | None = None  # a root this start made
    if root is None and settings.bucket and config is not None:
        ctx = open_context(None, options, config, activity)
        tls_folder = config.parent / f"{config.stem}-tls"  # no local root: beside the config
    else:
        chosen_root = root or settings.root or DEFAULT_ROOT
        if not chosen_root.exists():  # a typo in --root must not go unnoticed
            created = chosen_root
        ctx = open_context(chosen_root, options, activity=activity)
        tls_folder = chosen_root.parent / f"{chosen_root.name}-tls"
    ssl_context, steps = _tls(
        tls, cert, key, tls_folder, host, tls_name or [], settings.minimum_tls
    )
    users = htpasswd or settings.htpasswd
    auth = Htpasswd(users, settings.realm or "regtool") if users is not None else None
    writes = _writes(ctx)
    if schedule is not None and not writes:
        raise UsageError(
            "--gc-interval needs a writable v2 storage (this server does not write to it)"
        )
    metrics = Metrics(lambda: activity.open_sessions)
    # the web page's summary (started once listening) also feeds the storage gauges
    ctx.summaries = Summaries(ctx.store, on_publish=metrics.set_storage_from)
    app = App(
        ctx,
        auth,
        headers=dict(settings.headers),
        health=Health(ctx.store, writable=writes),
        metrics=metrics if metrics_host is None else None,
    )
    limit = max_connections or settings.max_connections or MAX_CONNECTIONS
    idle = idle_timeout or settings.idle_timeout or IDLE_TIMEOUT
    try:
        server = RegistryServer(
            (host, port),
            app,
            ssl_context=ssl_context,
            access_log=sys.stderr.buffer,
            max_connections=limit,
            idle_timeout=idle,
            log_format=fmt,
            metrics=metrics,
        )
    except OSError as exc:
        raise OperationalError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --addr (port 0 chooses a free one)",
        ) from None
    metrics_server = _metrics_listener(metrics, metrics_host) if metrics_host else None
    maintenance = Maintenance(
        ctx.store,
        activity,
        server.access_log,
        metrics,
        gc=schedule,
        purge=purge if writes else None,
    )

    def announce() -> None:
        assert ctx.summaries is not None
        ctx.summaries.start()
        sys.stdout.write(f"listening on {server.url}\n")
        sys.stdout.flush()
        log = server.access_log  # plain lines, or JSON objects with --log-format json
        if created is not None:
            log.event("storage", f"created new empty storage at {created}", created=str(created))
        if ctx.layout == "v1":
            out.note("legacy v1 storage: serving read-only (run `regtool migrate` to convert it)")
        if metrics_server is not None:
            mhost, mport = metrics_server.server_address[:2]
            shown = f"[{mhost}]" if ":" in str(mhost) else mhost
            sys.stdout.write(f"metrics on http://{shown}:{mport}/metrics\n")
        for line in steps(server.server_address[1]):
            sys.stdout.write(line + "\n")
        shown = _client_host(host, server.server_address[1])
        if auth is not None:
            https, ca = ssl_context is not None, tls is TlsMode.auto
            for line in login_steps(shown, auth.users, https=https, ca=ca):
                sys.stdout.write(line + "\n")
        if ssl_context is None and not _loopback(host):
            text = (
                f"plain HTTP on {shown}: passwords and images travel unencrypted, and "
                "podman and docker refuse it unless told the registry is insecure; "
                "--tls auto serves HTTPS with a local CA"
            )
            log.event("warning", text, message=text)
        sys.stdout.flush()
        maintenance.start()

    try:
        serve_until_signalled(server, announce)
    finally:
        maintenance.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


def _writes(ctx: Context) -> bool:
    """Whether this server writes to its storage (background gc and purging need it)."""
    return ctx.store.uploads is not None and not ctx.options.read_only and ctx.layout != "v1"


def _gc_schedule(
    settings: ServeSettings,
    interval: str | None,
    grace: str | None,
    delete_untagged: bool,
    upload_age: str | None,
) -> GcSchedule | None:
    """The background gc the flags and the config ask for (flags win); None: no gc."""
    conf = settings.gc
    every = parse_duration(interval, "--gc-interval") if interval else conf.interval
    if every is not None and every <= 0:
        raise UsageError("--gc-interval must be longer than 0", hint="e.g. --gc-interval 6h")
    options = GcOptions(
        grace=parse_duration(grace, "--grace") if grace else _or(conf.grace, DEFAULT_GRACE),
        upload_age=parse_duration(upload_age, "--upload-age")
        if upload_age
        else _or(conf.upload_age, DEFAULT_UPLOAD_AGE),
        delete_untagged=delete_untagged or bool(conf.delete_untagged),
    )
    return GcSchedule(every, options) if every is not None else None


def _purge_schedule(
    settings: ServeSettings,
    enabled: bool | None,
    age: str | None,
    interval: str | None,
    dry_run: bool,
) -> PurgeSchedule:
    conf = settings.purge
    default = PurgeSchedule()
    chosen = PurgeSchedule(
        enabled=enabled if enabled is not None else _or(conf.enabled, default.enabled),
        age=parse_duration(age, "--upload-purge-age") if age else _or(conf.age, default.age),
        interval=parse_duration(interval, "--upload-purge-interval")
        if interval
        else _or(conf.interval, default.interval),
        dry_run=dry_run or bool(conf.dry_run),
    )
    if chosen.age <= 0 or chosen.interval <= 0:
        raise UsageError("--upload-purge-age and --upload-purge-interval must be longer than 0")
    return chosen


def _or(value: object, default: object) -> Any:
    return default if value is None else value


def _metrics_listener(metrics: Metrics, where: tuple[str, int]) -> Any:
    """/metrics on a listener of its own (prometheus-client's), without auth."""
    from prometheus_client import start_http_server

    host, port = where
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise OperationalError(
            f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc}",
            hint="pick another --metrics-addr (port 0 chooses a free one)",
        ) from None
    return server


def parse_addr(text: str, option: str = "--addr") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{option} {text!r} is not HOST:PORT", hint=f"e.g. {option} 0.0.0.0:5000")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _settings(path: Path | None) -> ServeSettings:
    """What config.yml asks of serve; refuses what it cannot honour."""
    if path is None:
        # without --config deletes stay allowed (--no-delete turns them off), as they were
        # before config files were read; with one, distribution's default applies (off)
        return ServeSettings(delete=True)
    settings = serve_settings(load_config(path))
    if settings.ignored:
        out.warn(f"config {path}: ignoring {', '.join(settings.ignored)} (not used by serve)")
    return settings


def _tls(
    mode: TlsMode,
    cert: Path | None,
    key: Path | None,
    folder: Path,
    host: str,
    names: list[str],
    minimum: str | None = None,
) -> tuple[ssl.SSLContext | None, Callable[[int], list[str]]]:
    """The SSL context (or None) and a function giving the lines to print for clients."""

    if cert is not None and key is not None:
        return tlsmod.server_context(cert, key, minimum), _no_steps
    if mode is not TlsMode.auto:
        return None, _no_steps
    files = tlsmod.ensure_auto_tls(folder, tlsmod.default_names(host) + list(names))

    def steps(actual_port: int) -> list[str]:
        # listening on every address is for other hosts: show the name they will use
        shown = _host_name() if host in ("0.0.0.0", "::") else host
        lines = [f"CA certificate: {files.ca_cert}" + (" (new)" if files.created else "")]
        return lines + tlsmod.client_steps(f"{shown}:{actual_port}", files.ca_cert)

    return tlsmod.server_context(files.server_cert, files.server_key, minimum), steps


def login_steps(shown: str, users: tuple[str, ...], *, https: bool, ca: bool) -> list[str]:
    """How a client logs in to a server behind --htpasswd (`ca`: trusting --tls auto's CA,
    copied as ca.crt), shown for its first user."""
    user = users[0] if users else "USER"
    cacert = " --cacert ca.crt" if ca else ""
    scheme = "https" if https else "http"
    return [
        f"log in (htpasswd): podman login {shown}   (docker login {shown})",
        f"  curl -u {user}{cacert} {scheme}://{shown}/v2/_catalog",
    ]


def _client_host(host: str, port: int) -> str:
    """HOST:PORT as clients reach this server (this machine's name when bound to all)."""
    shown = _host_name() if host in ("0.0.0.0", "::") else host
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name() -> str:
    """This machine's name as other hosts should know it (FQDN, else the host name)."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if fqdn.startswith("localhost") else fqdn


def _no_steps(port: int) -> list[str]:
    return []
