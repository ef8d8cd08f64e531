#!/usr/bin/env python3
"""Background gc in `regtool serve`: the manifest GET rate with and without it, and /metrics.

On a hard-linked copy of the 2,000-repository synthetic tree (scripts/mksynthetic.py; gc
unlinks, so the cached tree stays whole), alternating rounds of:

- `regtool serve` alone: `wrk -t2 -c16 -d5s` GETs of one manifest by tag;
- `regtool serve --gc-interval 1s --grace 0`: the same while gc runs back to back (the
  first run sweeps the tree's garbage, later ones mark the whole tree again);

then, during gc, the time of 20 `GET /metrics`. Goals (issue 13): the rate drops by at
most 20%, /metrics answers in under 50 ms. Writes the section "serve with background gc"
of docs/benchmarks.md.

    python scripts/bench_serve_gc.py [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from bench_ls import DEFAULT_ROOT, ensure_tree  # noqa: E402
from bench_serve import run_regtool, wrk_rate  # noqa: E402

SECTION = "serve with background gc"
MANIFEST = "/v2/fam00/app0000/manifests/v1.0"
GC_LINE = re.compile(r"\bgc: ")


@contextmanager
def serving(root: Path, log: Path, *extra: str) -> Iterator[str]:
    with run_regtool(root, log, *extra) as (host, _pid):
        yield host


def gc_runs(log: Path) -> int:
    return len(GC_LINE.findall(log.read_text(errors="replace"))) if log.exists() else 0


def metrics_times(host: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://{host}/metrics", timeout=10) as answer:
            answer.read()
        times.append(time.perf_counter() - started)
        time.sleep(0.1)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    ensure_tree(DEFAULT_ROOT)
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="regtool-bench-gc-"))
    try:
        root = work / "tree"
        subprocess.run(["cp", "-al", str(DEFAULT_ROOT), str(root)], check=True)
        rates: dict[str, list[float]] = {"alone": [], "gc": []}
        runs_during: list[int] = []
        metrics: list[float] = []
        for _ in range(args.rounds):
            with serving(root, work / "alone.log") as host:
                wrk_rate(f"http://{host}{MANIFEST}", "warm-up")
                rates["alone"].append(wrk_rate(f"http://{host}{MANIFEST}", "alone"))
            log = work / "gc.log"
            with serving(root, log, "--gc-interval", "1s", "--grace", "0") as host:
                deadline = time.monotonic() + 120
                while gc_runs(log) < 1 and time.monotonic() < deadline:
                    time.sleep(0.5)  # the first run sweeps the garbage; measure beside a mark
                before = gc_runs(log)
                rates["gc"].append(wrk_rate(f"http://{host}{MANIFEST}", "gc"))
                metrics.extend(metrics_times(host, 20))
                runs_during.append(gc_runs(log) - before)
        alone, busy = statistics.median(rates["alone"]), statistics.median(rates["gc"])
        drop = 1 - busy / alone
        m_median, m_max = statistics.median(metrics) * 1000, max(metrics) * 1000
        each = {name: ", ".join(f"{r:,.0f}" for r in runs) for name, runs in rates.items()}
        ok = drop <= 0.20 and m_median < 50
        body = f"""
Machine: {_bench.machine()}; load average {load:.2f} at the start,
{os.getloadavg()[0]:.2f} at the end. Tree: a hard-linked copy of `{DEFAULT_ROOT}`
(`scripts/mksynthetic.py` defaults, 2,000 repositories). {args.rounds} alternating rounds;
`python scripts/bench_serve_gc.py --rounds {args.rounds}`.

| server | `wrk -t2 -c16 -d5s` GET {MANIFEST}, req/s (median) | each round |
|---|---|---|
| `regtool serve` | {alone:,.0f} | {each["alone"]} |
| `regtool serve --gc-interval 1s --grace 0` | {busy:,.0f} | {each["gc"]} |

Rate with background gc: **{busy / alone:.2f}x** of the rate without it (a drop of
{drop:.0%}; goal at most 20%); gc runs that finished during the 5 s windows:
{", ".join(map(str, runs_during))} (one run marks the whole tree in several seconds, so
every window falls inside a run). `GET /metrics` during gc: median {m_median:.1f} ms, max
{m_max:.1f} ms over {len(metrics)} requests (goal under 50 ms).
{"Goals met." if ok else "Goal missed."}
"""
        if not args.no_write:
            _bench.write_section(SECTION, body)
        print(body.strip())
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
