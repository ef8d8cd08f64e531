"""Start `regtool serve` for tests: in-process (API table) or as a subprocess (real clients)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from regtool.server.app import App, open_context
from regtool.server.handlers.context import Options
from regtool.server.stdlib import RegistryServer
from tests.support.clients import skopeo  # noqa: F401 - used by tests
from tests.support.serve import Served, subprocess_server  # noqa: F401 - used by tests

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_V2 = REPO_ROOT / "tests" / "fixtures" / "v2"
FIXTURE_V1 = REPO_ROOT / "tests" / "fixtures" / "v1"
INSECURE = ["--src-tls-verify=false", "--dest-tls-verify=false"]


@contextmanager
def in_process(
    root: Path, options: Options | None = None, auth: object = None, **limits: Any
) -> Iterator[Served]:
    """The server on a thread of this process, on a free port of 127.0.0.1; `limits` go to
    RegistryServer (max_connections, idle_timeout)."""
    ctx = open_context(root, options or Options())
    server = RegistryServer(("127.0.0.1", 0), App(ctx, auth), **limits)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield Served(f"http://{host}", host, ctx.root, server=server)
    finally:
        server.shutdown()
        server.server_close()


def copy_fixture(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture
def v2_copy(tmp_path: Path) -> Path:
    return copy_fixture(FIXTURE_V2, tmp_path / "v2")
