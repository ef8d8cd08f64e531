"""Progress on stderr (regtool/cli/progress.py), run as real processes: drawn when stderr is
a terminal (a pseudo-terminal here) whatever stdout is, never otherwise; stdout the same
byte for byte either way; rich never imported when stderr is no terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.bombs import REPO_ROOT
from tests.support.v1tree import V1_FIXTURE, V2_FIXTURE

REGTOOL = [sys.executable, "-m", "regtool"]
TIMEOUT = 120
SECONDS = re.compile(rb"\d+\.\d+( s|\b)")  # import/migrate say how long they took


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def on_terminal(
    args: list[str], stdout: Path, *, pre: list[str] | None = None, **env: str
) -> tuple[int, bytes]:
    """Run regtool with stderr on a pseudo-terminal and stdout into a file: (exit code,
    what the terminal received)."""
    master, slave = pty.openpty()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *(pre or []), "-m", "regtool", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=slave,
            env=_env(**env),
        )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    return proc.wait(timeout=TIMEOUT), seen


def off_terminal(args: list[str], *, pre: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *(pre or []), "-m", "regtool", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        env=_env(),
        check=False,
    )


def _tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


POLICY = """\
policies:
  - repositories: ["centos"]
    keep:
      - patterns: ["^httpd$"]
"""


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """Two private copies of each fixture (one per run: gc/import/migrate write), a
    tarball to import, a policy."""
    found = {}
    for run in ("tty", "plain"):
        found[f"v2-{run}"] = _tree(V2_FIXTURE, tmp_path / f"v2-{run}")
        found[f"v1-{run}"] = _tree(V1_FIXTURE, tmp_path / f"v1-{run}")
        found[f"new-{run}"] = tmp_path / f"new-{run}"
    tarball = tmp_path / "images.tar"
    made = off_terminal(["export", "centos:httpd", "busybox", "-o", str(tarball),
                         "--root", str(V2_FIXTURE)])  # fmt: skip
    assert made.returncode == 0, made.stderr
    found["tarball"] = tarball
    found["policy"] = tmp_path / "policy.yml"
    found["policy"].write_text(POLICY)
    found["out"] = tmp_path / "out"
    found["out"].mkdir()
    return found


# name -> (arguments with {v2}, {v1}, {new}, {tarball}, {policy}, {out} filled per run,
# what the progress line must say on the terminal)
COMMANDS: dict[str, tuple[list[str], bytes]] = {
    "ls": (["ls", "--root", "{v2}"], rb"ls  [1-9][0-9,]* files  [0-9,]+/s"),
    "ls-repos-v1": (["ls", "--repos", "--root", "{v1}"], rb"ls  [1-9][0-9,]* files"),
    "layers": (["layers", "centos:httpd", "--root", "{v2}"], rb"layers  [1-9][0-9,]* files"),
    "verify": (["verify", "--root", "{v2}"], rb"verify: hashing .*100%  ([0-9.]+ KiB) of \1"),
    "verify-quick": (
        ["verify", "--quick", "--root", "{v2}"],
        rb"verify: scanning  [1-9][0-9,]* files  [0-9,]+/s",
    ),
    "verify-v1": (["verify", "--root", "{v1}"], rb"verify: hashing .*100%"),
    "gc-dry-run": (["gc", "--dry-run", "-m", "--grace", "0", "--root", "{v2}"], rb"gc  [1-9]"),
    "gc": (["gc", "--yes", "-m", "--grace", "0", "--root", "{v2}"], rb"gc  [1-9][0-9,]* files"),
    "gc-v1": (["gc", "--yes", "--grace", "0", "--root", "{v1}"], rb"gc  [1-9][0-9,]* files"),
    "prune": (
        ["prune", "--policy", "{policy}", "--yes", "--grace", "0", "--root", "{v2}"],
        rb"prune  [1-9][0-9,]* files",
    ),
    "import": (
        ["import", "{tarball}", "--root", "{new}"],
        rb"import: reading .*100%  ([0-9.]+ KiB) of \1",
    ),
    "export": (
        ["export", "centos:httpd", "-o", "{out}/x.tar", "--root", "{v2}"],
        rb"export: writing .*100%  ([0-9.]+ KiB) of \1",
    ),
    "export-stdout": (
        ["export", "busybox", "-o", "-", "--root", "{v2}"],
        rb"export: writing .*100%  ([0-9.]+ KiB) of \1",
    ),
    "migrate": (
        ["migrate", "--from", "{v1}", "--to", "{new}", "--yes"],
        rb"migrate: copying layers .*100%  ([0-9.]+ KiB) of \1",
    ),
}


def _args(template: list[str], places: dict[str, Path], run: str) -> list[str]:
    names = {
        "v2": places[f"v2-{run}"],
        "v1": places[f"v1-{run}"],
        "new": places[f"new-{run}"],
        "tarball": places["tarball"],
        "policy": places["policy"],
        "out": places["out"] / run,
    }
    (places["out"] / run).mkdir(exist_ok=True)
    return [word.format(**names) for word in template]


def _same(text: bytes, places: dict[str, Path], run: str) -> bytes:
    """Output with this run's own folders and durations put the same way."""
    for name in ("v2", "v1", "new"):
        text = text.replace(str(places[f"{name}-{run}"]).encode(), name.encode())
    text = text.replace(str(places["out"] / run).encode(), b"out")
    return SECONDS.sub(b"N.N", text)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_progress_on_a_terminal_and_nothing_of_it_elsewhere(name, places, tmp_path):
    template, line = COMMANDS[name]
    stdout = tmp_path / "stdout"
    code, terminal = on_terminal(_args(template, places, "tty"), stdout)
    plain = off_terminal(_args(template, places, "plain"))
    assert code == plain.returncode, (terminal, plain.stderr)
    drawn = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", terminal)
    assert re.search(line, drawn), drawn
    assert b"\r" in terminal and b"\x1b[" in terminal  # a line redrawn in place
    # stdout: the same bytes with or without a terminal on stderr
    assert _same(stdout.read_bytes(), places, "tty") == _same(plain.stdout, places, "plain")
    # no terminal: not a carriage return, not an escape code, no progress words
    assert b"\r" not in plain.stderr and b"\x1b" not in plain.stderr, plain.stderr
    assert b"files" not in plain.stderr and b"/s" not in plain.stderr, plain.stderr
    if name == "export":
        tty_tar = (places["out"] / "tty" / "x.tar").read_bytes()
        assert tty_tar == (places["out"] / "plain" / "x.tar").read_bytes()


def test_rich_is_imported_only_when_stderr_is_a_terminal(tmp_path):
    pre = ["-X", "importtime"]
    args = ["ls", "--root", str(V2_FIXTURE)]
    plain = off_terminal(args, pre=pre)
    assert plain.returncode == 0
    assert b"rich" not in plain.stderr
    code, terminal = on_terminal(args, tmp_path / "stdout", pre=pre)
    assert code == 0
    assert b"rich.progress" in terminal  # the same check sees it where it is used


def test_term_dumb_draws_nothing(tmp_path):
    code, terminal = on_terminal(
        ["verify", "--root", str(V2_FIXTURE)], tmp_path / "stdout", TERM="dumb"
    )
    assert code == 0
    assert terminal == b""


def test_no_color_draws_the_line_without_colours(tmp_path):
    code, terminal = on_terminal(
        ["ls", "--root", str(V2_FIXTURE)], tmp_path / "stdout", NO_COLOR="1"
    )
    assert code == 0
    assert b"ls  " in terminal and b"files" in terminal
    assert not re.search(rb"\x1b\[[0-9;]*m", terminal), terminal


def test_counts_from_forked_workers_reach_the_parent():
    """gc and ls fork workers on big trees: their ticks arrive through the meter's pipe."""
    from regtool.cli.progress import LiveMeter
    from regtool.ops.gc_io import run_parts
    from regtool.storage import meter

    def work(chunk: list[int]) -> int:
        for size in chunk:
            meter.files(1)
            meter.data(size)
        return len(chunk)

    live = LiveMeter("test")
    try:
        with meter.installed(live):
            done = run_parts(work, [[1] * 1000, [2] * 2000, [3] * 3000])
        assert done == [1000, 2000, 3000]
        live._drain()  # the workers have ended: their last reports are in the pipe
        assert (live.counted, live.done) == (6000, 1000 + 4000 + 9000)
    finally:
        os.close(live._read)
        os.close(live._write)


@pytest.mark.parametrize(
    "args",
    [["ls"], ["verify", "--quick"], ["gc", "--dry-run", "--grace", "0"]],
    ids=["ls", "verify-quick", "gc-dry-run"],
)
def test_progress_over_an_s3_bucket_counts_its_listing_and_reads(rgw, tmp_path, args):
    from tests.support.rgw import bucket_copy

    config = bucket_copy(rgw, V2_FIXTURE, tmp_path)
    stdout = tmp_path / "stdout"
    code, terminal = on_terminal([*args, "--config", str(config)], stdout)
    plain = off_terminal([*args, "--config", str(config)])
    assert code == plain.returncode == 0, plain.stderr
    drawn = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", terminal)
    assert re.search(rb"(ls|verify: scanning|gc)  [1-9][0-9,]* files  [0-9,]+/s", drawn), drawn
    assert stdout.read_bytes() == plain.stdout
    assert b"\r" not in plain.stderr and b"\x1b" not in plain.stderr
