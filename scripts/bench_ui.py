#!/usr/bin/env python3
"""Benchmark the web page of `regtool serve` on the 2,000-repository synthetic tree.

Starts `regtool serve` on the tree (made once by scripts/mksynthetic.py and cached), waits
10 s, then loads the page in headless Debian chromium (Playwright's Python package; no
browser is downloaded) and times each load until the first repository row shows.
Target (issue #12): within 2 s.

    python scripts/bench_ui.py [--root /tmp/regtool-bench/synthetic] [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import browser  # noqa: E402
from bench_ls import DEFAULT_ROOT, ensure_tree  # noqa: E402

UP_FOR = 10.0  # seconds the server runs before the first page load
TARGET = 2.0


def page_loads(url: str, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = browser.launch(playwright, profile)
        context.set_default_timeout(60_000)
        try:
            for _ in range(runs):
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url)
                page.locator("table[aria-label=repositories] tbody tr a").first.wait_for()
                times.append(time.perf_counter() - started)
                page.close()
        finally:
            context.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args()
    ensure_tree(args.root)
    env = {**os.environ, "PYTHONPATH": str(_bench.REPO)}
    command = [sys.executable, "-m", "regtool", "serve", "--root", str(args.root)]
    proc = subprocess.Popen(
        [*command, "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("listening on ")
        time.sleep(UP_FOR)
        times = page_loads(url + "/", args.runs)
        with urllib.request.urlopen(url + "/ui/api/summary", timeout=30) as answer:
            summary = json.load(answer)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    first, median = times[0], statistics.median(times)
    figures = summary.get("summary") or {}
    took = figures.get("seconds")
    took_text = f"{took:.1f}" if isinstance(took, (int, float)) else "-"
    body = f"""
Machine: {_bench.machine()}.
Tree: `scripts/mksynthetic.py` defaults (2,000 repositories x 10 tags); `regtool serve` up
for {UP_FOR:.0f} s, then {args.runs} page loads in headless chromium, each timed from
navigation to the first repository row; `python scripts/bench_ui.py`.

| measure | seconds |
|---|---|
| first page load to repositories shown | {first:.2f} |
| median of {args.runs} loads | {median:.2f} |
| summary computation (ls + two gc plans), state `{summary.get("state")}` | {took_text} |

Target: repositories shown within {TARGET:.0f} s of loading the page.
"""
    if args.write:
        _bench.write_section("ui", body)
    print(body)
    return 0 if max(times) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
