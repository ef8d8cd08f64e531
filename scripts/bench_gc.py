#!/usr/bin/env python3
"""Benchmark `regtool gc --dry-run` against `docker-registry garbage-collect --dry-run`.

Target (issue #3): on the synthetic tree, at most 0.3x the reference's time, the same plan
(equal blob sets), peak memory under 300 MB; warm cache. The tree is only read: a dry run
writes nothing (not even the lock file). Reuses /tmp/syn-full and /tmp/syn-full.yml when
they exist, else generates a tree.

    python scripts/bench_gc.py [--root /tmp/syn-full --config /tmp/syn-full.yml] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

SHARED_ROOT = Path("/tmp/syn-full")
SHARED_CONFIG = Path("/tmp/syn-full.yml")
OWN_ROOT = Path("/tmp/regtool-bench/gc-synthetic")
REF_LABEL = "docker-registry garbage-collect --dry-run CONFIG > /dev/null"
OUR_LABEL = "regtool gc --dry-run --grace 0 --format json --root ROOT > /dev/null"
ELIGIBLE = re.compile(r"^blob eligible for deletion: (\S+)\s*$", re.M)


def choose_tree(root: Path | None, config: Path | None) -> tuple[Path, Path]:
    if root is None and SHARED_ROOT.joinpath("docker").is_dir() and SHARED_CONFIG.is_file():
        return SHARED_ROOT, SHARED_CONFIG
    root = root or OWN_ROOT
    if not (root / "docker").is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        script = _bench.REPO / "scripts" / "mksynthetic.py"
        subprocess.run([sys.executable, str(script), "--out", str(root)], check=True)
    if config is None:
        config = root.parent / f"{root.name}.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {json.dumps(str(root))}\n"
        )
    return root, config


def same_plan(regtool_cmd: list[str], reference_cmd: list[str], env: dict[str, str]) -> tuple:
    mine = subprocess.run(regtool_cmd, capture_output=True, text=True, env=env, check=True)
    doc = json.loads(mine.stdout)
    ours = {entry["id"] for entry in doc["delete"] if entry["kind"] == "blob"}
    ref = subprocess.run(reference_cmd, capture_output=True, text=True, check=True)
    theirs = set(ELIGIBLE.findall(ref.stdout))
    return ours == theirs, len(ours), len(theirs), doc["bytes"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root, config = choose_tree(args.root, args.config)
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(_bench.REPO)}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the timed runs inherit it
    regtool = [sys.executable, "-m", "regtool", "gc", "--dry-run", "--grace", "0"]
    regtool += ["--format", "json", "--root", str(root)]
    reference = ["docker-registry", "garbage-collect", "--dry-run", str(config)]
    equal, n_ours, n_theirs, freed = same_plan(regtool, reference, env)
    startup = [sys.executable, "-m", "regtool", "--version"]
    commands = {"reference": reference, "regtool": regtool, "startup": startup}
    results = _bench.alternate(commands, args.runs)
    t_start = _bench.median(results["startup"])
    t_ref, t_ours = _bench.median(results["reference"]), _bench.median(results["regtool"])
    rss_ref = _bench.peak(results["reference"]) / 1024
    rss_ours = _bench.peak(results["regtool"]) / 1024
    ratio = t_ours / t_ref
    files = sum(len(names) for _, _, names in os.walk(root))
    ref_row = f"| `{REF_LABEL}` | {t_ref:.2f} s | {rss_ref:.0f} MB |"
    our_row = f"| `{OUR_LABEL}` | {t_ours:.2f} s | {rss_ours:.0f} MB |"
    body = f"""
Machine: {_bench.machine()}; load average {load:.2f} at the start (other work shares it).
Tree: `{root}` (`scripts/mksynthetic.py` defaults: 2,000 repositories x 10 tags, 20% of the
tags removed by a manifest delete): {files:,} files. Warm page cache, {args.runs} alternating
runs after a warm-up; `python scripts/bench_gc.py`. regtool runs as `python -m regtool` from
this checkout (interpreter start-up included); it uses {_workers()} processes here.

| command | median | peak RSS |
|---|---|---|
{ref_row}
{our_row}

Ratio regtool/reference: **{ratio:.2f}x** (target at most 0.3x); peak memory {rss_ours:.0f} MB
(target under 300 MB; the largest of regtool and its worker process). Of regtool's time,
{t_start:.2f} s is start-up alone (`python -m regtool --version`: the interpreter and the
CLI's imports); without it the ratio would be {(t_ours - t_start) / t_ref:.2f}x.
Same plan: {"yes" if equal else "NO"} ({n_ours:,} blobs selected by regtool, {n_theirs:,} by
the reference; {freed:,} bytes in regtool's plan).
"""
    _bench.write_section("gc", body)
    print(body.strip())
    return 0 if equal else 1


def _workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


if __name__ == "__main__":
    raise SystemExit(main())
