"""Run `regtool serve` as a subprocess on a free loopback port (real clients talk to it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    url: str
    host: str  # 127.0.0.1:PORT
    root: Path
    log: Path | None = None
    proc: subprocess.Popen[str] | None = None
    server: Any = None  # the in-process RegistryServer, when there is one


@contextmanager
def subprocess_server(
    root: Path | None,
    *args: str,
    log: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    config: Path | None = None,
) -> Iterator[Served]:
    """`regtool serve --addr 127.0.0.1:0 --root ROOT ARGS` (root None: `--config CONFIG`
    instead, e.g. a bucket); the URL comes from its first line. `preexec_fn` runs in the
    child before it starts (to drop privileges, say)."""
    if root is None:
        assert config is not None, "a root or a config"
        where = ["--config", str(config)]
        root = config.parent
        log = log or config.parent / f"{config.stem}.serve.log"
    else:
        where = ["--root", str(root)]
    log = log or root.parent / f"{root.name}.serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regtool",
                "serve",
                *where,
                "--addr",
                "127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=preexec_fn,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)},
        )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.startswith("listening on "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"serve did not start: {first!r}\n{log.read_text()}")
    url = first.removeprefix("listening on ")
    try:
        yield Served(url, url.split("://", 1)[1], root, log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
