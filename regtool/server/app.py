"""Dispatch: auth, route, call the handler; the one place that turns errors into spec JSON."""

from __future__ import annotations

import base64
import errno
import ssl
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from regtool.layout.detect import holds_nothing
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths
from regtool.server.activity import Activity
from regtool.server.auth import LoginFailure, LoginThrottle
from regtool.server.handlers import (
    blobs,
    catalog,
    manifests,
    referrers,
    tags,
    ui,
    uiapi,
    uploads,
    v1,
)
from regtool.server.handlers.context import Context, Options
from regtool.server.http import ApiError, Request, Response
from regtool.server.routes import route
from regtool.storage.driver import FULL_ERRNOS, ForeignObjectError, StorageError, StorageFull

Handler = Callable[[Context, Request, str, str], Response]

# (endpoint, method) -> handler; HEAD is served by the GET handler (the body is not sent)
HANDLERS: dict[tuple[str, str], Handler] = {
    ("base", "GET"): catalog.base,
    ("catalog", "GET"): catalog.catalog,
    ("tags", "GET"): tags.list_tags,
    ("manifest", "GET"): manifests.get_manifest,
    ("manifest", "PUT"): manifests.put_manifest,
    ("manifest", "DELETE"): manifests.delete_manifest,
    ("blob", "GET"): blobs.get_blob,
    ("blob", "DELETE"): blobs.delete_blob,
    ("uploads", "POST"): uploads.start_upload,
    ("upload", "GET"): uploads.upload_status,
    ("upload", "PATCH"): uploads.patch_upload,
    ("upload", "PUT"): uploads.finish_upload,
    ("upload", "DELETE"): uploads.cancel_upload,
    ("referrers", "GET"): referrers.get_referrers,
    ("v1_ping", "GET"): v1.ping,
    ("v1_search", "GET"): v1.search,
    ("v1_tags", "GET"): v1.tags,
    ("v1_tag", "GET"): v1.tag,
    ("v1_repository_images", "GET"): v1.repository_images,
    ("v1_image", "GET"): v1.image,
    # the web page (read-only): `/` for a browser, its pages, files and JSON below /ui
    ("root", "GET"): ui.root,
    ("ui_page", "GET"): ui.page,
    ("ui_static", "GET"): ui.static,
    ("ui_summary", "GET"): uiapi.summary,
    ("ui_repositories", "GET"): uiapi.repositories,
    ("ui_repository", "GET"): uiapi.repository,
    ("ui_image", "GET"): uiapi.image,
}
NAMED = frozenset({"tags", "manifest", "blob", "uploads", "upload", "referrers"})
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


class Endpoint(Protocol):
    """/healthz or /metrics: answers without looking at the request."""

    def response(self) -> Response: ...


class Authenticator(Protocol):
    def check(self, authorization_header: str | None) -> bool: ...

    def verdict(self, authorization_header: str | None) -> LoginFailure | None: ...

    def challenge(self) -> str: ...


class App:
    def __init__(
        self,
        ctx: Context,
        auth: Authenticator | None = None,
        *,
        headers: dict[str, str] | None = None,
        throttle: LoginThrottle | None = None,
        health: Endpoint | None = None,
        metrics: Endpoint | None = None,
    ) -> None:
        self.ctx = ctx
        self.auth = auth
        self.health = health  # GET /healthz, answered without credentials (probes have none)
        self.metrics = metrics  # GET /metrics, behind the API's auth
        self.throttle = throttle or LoginThrottle()
        self.headers = dict(headers or {})  # config.yml's http.headers: on every answer

    def handle(self, req: Request) -> Response:
        try:
            response = self._dispatch(req)
        except ApiError as exc:
            response = error_response(exc)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            raise  # the client went away mid-body: the transport drops the connection
        except ForeignObjectError as exc:  # a link or special file: never served, as if absent
            response = error_response(foreign_object(req, exc))
        except (StorageError, OSError) as exc:  # never a 404: the object may well exist
            response = error_response(storage_failure(req, exc))
        except Exception:  # the one catch-all: a bug must not kill the connection thread
            traceback.print_exc(file=sys.stderr)
            response = error_response(ApiError("UNKNOWN"))
        if self.headers:
            response.headers.update(self.headers)
        if req.path.startswith("/v2"):
            response.headers.update(API_VERSION)
        return response

    def _dispatch(self, req: Request) -> Response:
        health = self.health if req.path == "/healthz" else None
        if health is not None and req.method in ("GET", "HEAD"):
            return health.response()
        if self.auth is not None:
            self._authenticate(self.auth, req)
        if req.path == "/metrics" and self.metrics is not None and req.method in ("GET", "HEAD"):
            return self.metrics.response()
        match = route(req.path)
        handler = HANDLERS.get((match.endpoint, "GET" if req.method == "HEAD" else req.method))
        if handler is None:
            if match.endpoint in ("not_found", "root"):  # `/` is the page's for GET only
                raise ApiError("NOT_FOUND", detail={"path": req.path[:200]})
            raise ApiError(
                "UNSUPPORTED",
                f"{req.method} is not supported here",
                headers={"Allow": allowed(match.endpoint)},
            )
        if match.endpoint in NAMED:
            self.ctx.check_name(match.name)
        return handler(self.ctx, req, match.name, match.ref)

    def _authenticate(self, auth: Authenticator, req: Request) -> None:
        """Set req.user, or raise 401; a failed login from an address that keeps failing is
        answered late (this thread sleeps, holding no lock: other clients go on)."""
        header = req.headers.get("authorization")
        failure = auth.verdict(header)
        if failure is None:
            self.throttle.succeeded(req.client)
            req.user = basic_user(header or "")
            return
        req.login_failure = failure  # for the access log; the answer is the same for all
        if header:  # a request without credentials is a client asking how to log in
            delay = self.throttle.failed(req.client)
            if delay:
                time.sleep(delay)
        raise ApiError("UNAUTHORIZED", headers={"WWW-Authenticate": auth.challenge()})


def basic_user(header: str) -> str | None:
    """The user name of a Basic Authorization header (for the access log)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None


def allowed(endpoint: str) -> str:
    methods = {m for e, m in HANDLERS if e == endpoint}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


# what a request finds where the storage holds a link or a special file: nothing, logged
FOREIGN_CODES = {
    "blob": "BLOB_UNKNOWN",
    "manifest": "MANIFEST_UNKNOWN",
    "upload": "BLOB_UPLOAD_UNKNOWN",
    "uploads": "NAME_UNKNOWN",
    "tags": "NAME_UNKNOWN",
    "referrers": "NAME_UNKNOWN",
}


def foreign_object(req: Request, exc: ForeignObjectError) -> ApiError:
    """The answer when a request meets a link or special file in the storage: 404, logged."""
    sys.stderr.write(f"not served: {req.method} {req.path[:200]}: {exc}\n")
    return ApiError(FOREIGN_CODES.get(route(req.path).endpoint, "NOT_FOUND"))


def storage_failure(req: Request, exc: StorageError | OSError) -> ApiError:
    """The answer to a storage error, logged: 507 when the storage is full, else 500."""
    if isinstance(exc, StorageError):
        what = str(exc)
    else:
        code = errno.errorcode.get(exc.errno or 0, "?")
        what = f"{exc.filename or '?'}: [{code}] {exc.strerror or exc}"
    sys.stderr.write(f"storage error: {req.method} {req.path[:200]}: {what}\n")
    if isinstance(exc, StorageFull) or getattr(exc, "errno", None) in FULL_ERRNOS:
        return ApiError("UNKNOWN", "storage full", status=507)
    return ApiError("UNKNOWN", "storage error")


def error_response(exc: ApiError) -> Response:
    headers = {"Content-Type": "application/json"}
    headers.update(exc.headers)
    return Response(exc.status, headers, exc.body())


def open_context(
    root: Path | None,
    options: Options,
    config: Path | None = None,
    activity: Activity | None = None,
) -> Context:
    """The context serving `root`; a missing or empty root becomes an empty v2 tree.
    With root None, the storage `config` names (an S3 bucket), read without a snapshot:
    other servers on the bucket write to it too."""
    if root is None:
        if config is None:
            raise ValueError("open_context needs a root or a config")
        store = open_storage(None, config, writable=not options.read_only, bulk=False)
        return Context(store, options, activity)
    if not root.exists() or (root.is_dir() and holds_nothing(root)):
        if options.read_only:
            root.mkdir(parents=True, exist_ok=True)
        else:
            (root / paths.V2).mkdir(parents=True, exist_ok=True)
    store = open_storage(root)
    if not options.read_only and store.layout != "v1":  # v1 storage is served read-only
        store = open_storage(root, writable=True)
    return Context(store, options, activity)
