#!/usr/bin/env python3
"""Benchmark `regtool prune --dry-run` with a policy over every repository against
`regtool gc --dry-run` on the same synthetic tree.

Target (issue #10): prune no slower than gc + 20%, peak memory under 300 MB; warm cache.
Both only read the tree. Reuses /tmp/syn-full when it exists, else generates a tree (as
bench_gc.py does).

    python scripts/bench_prune.py [--root /tmp/syn-full] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import bench_gc  # noqa: E402

POLICY = """\
policies:
  - repositories: ["**"]
    keep:
      - patterns: ["^latest$"]
      - patterns: [".*"]
        most_recent: 5
    allow_empty: true
"""
KEEP_ALL = """\
policies:
  - repositories: ["**"]
    keep:
      - patterns: [".*"]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root, _ = bench_gc.choose_tree(args.root, None)
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(_bench.REPO)}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    policy = Path(tempfile.mkdtemp(prefix="bench-prune-")) / "policy.yml"
    policy.write_text(POLICY)
    keep_all = policy.with_name("keep-all.yml")
    keep_all.write_text(KEEP_ALL)
    base = [sys.executable, "-m", "regtool"]
    tail = ["--dry-run", "--grace", "0", "--format", "json", "--root", str(root)]
    gc = [*base, "gc", *tail]
    prune = [*base, "prune", "--policy", str(policy), *tail]
    noop = [*base, "prune", "--policy", str(keep_all), *tail]
    doc = json.loads(subprocess.run(prune, capture_output=True, env=env, check=True).stdout)
    tags = sum(1 for entry in doc["delete"] if entry["kind"] == "tag")
    blobs = sum(1 for entry in doc["delete"] if entry["kind"] == "blob")
    results = _bench.alternate({"gc": gc, "prune": prune, "noop": noop}, args.runs)
    t_gc, t_prune = _bench.median(results["gc"]), _bench.median(results["prune"])
    t_noop, rss_noop = _bench.median(results["noop"]), _bench.peak(results["noop"]) / 1024
    rss_gc, rss_prune = _bench.peak(results["gc"]) / 1024, _bench.peak(results["prune"]) / 1024
    ratio = t_prune / t_gc
    body = f"""
Machine: {_bench.machine()}; load average {load:.2f} at the start (other work shares it).
Tree: `{root}` (`scripts/mksynthetic.py` defaults, 2,000 repositories). Policy: every
repository (`"**"`), keep `latest` and the 5 most recently pushed tags; {args.runs}
alternating runs after a warm-up; `python scripts/bench_prune.py`.

| command | median | peak RSS |
|---|---|---|
| `regtool gc --dry-run --grace 0 --format json --root ROOT` | {t_gc:.2f} s | {rss_gc:.0f} MB |
| `regtool prune --policy P` with the same options | {t_prune:.2f} s | {rss_prune:.0f} MB |
| `regtool prune --policy KEEP_ALL` (every tag kept) | {t_noop:.2f} s | {rss_noop:.0f} MB |

Ratio prune/gc: **{ratio:.2f}x** (target at most 1.2x); peak memory {rss_prune:.0f} MB (target
under 300 MB). P removes {tags:,} tags and {tags:,} manifests and frees {blobs:,} blobs,
{doc["bytes"]:,} bytes (gc alone frees 16,000): a bigger plan, swept the same way. With a
policy that keeps every tag (the same plan as gc), prune takes {t_noop / t_gc:.2f}x gc's time:
that is the cost of reading push times and applying the rules.
"""
    _bench.write_section("prune", body)
    print(body.strip())
    return 0 if ratio <= 1.2 and rss_prune < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
