#!/usr/bin/env python3
"""Cost as the tree grows: peak memory and time of `regtool gc --dry-run` and `regtool ls`
beside `docker-registry garbage-collect --dry-run`, on one or more synthetic trees.

Goal (issue 14): on the 5x tree (`scripts/mksynthetic.py --repos 10000 --tags 10`, about
9 GB and 970k files: generate it yourself, it is kept out of CI), the peak RSS of both
regtool commands at most the reference's, and gc at most 0.3x its time, with the same plan.
Each tree is only read. A tree's reference config is ROOT.yml beside it (written if absent).

    python scripts/bench_scale.py --root /tmp/syn-full --root /tmp/syn-5x [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from bench_gc import ELIGIBLE  # noqa: E402

TITLE = "scale: 1x and 5x trees"


def config_for(root: Path) -> Path:
    config = root.parent / f"{root.name}.yml"
    if not config.is_file():
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {json.dumps(str(root))}\n"
        )
    return config


def same_plan(root: Path, config: Path) -> tuple[bool, int]:
    """Whether regtool's dry run selects exactly the blobs the reference's does."""
    mine = subprocess.run(gc_cmd(root), capture_output=True, text=True, check=True)
    ours = {e["id"] for e in json.loads(mine.stdout)["delete"] if e["kind"] == "blob"}
    ref = subprocess.run(ref_cmd(config), capture_output=True, text=True, check=True)
    return ours == set(ELIGIBLE.findall(ref.stdout)), len(ours)


def gc_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "regtool", "gc", "--dry-run", "--grace", "0"] + [
        "--format",
        "json",
        "--root",
        str(root),
    ]


def ls_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "regtool", "ls", "--format", "json", "--root", str(root)]


def ref_cmd(config: Path) -> list[str]:
    return ["docker-registry", "garbage-collect", "--dry-run", str(config)]


def measure(root: Path, runs: int) -> tuple[str, bool]:
    config = config_for(root)
    files = sum(len(names) for _, _, names in os.walk(root))
    load_before = os.getloadavg()[0]
    equal, blobs = same_plan(root, config)
    commands = {"reference": ref_cmd(config), "gc": gc_cmd(root), "ls": ls_cmd(root)}
    results = _bench.alternate(commands, runs)
    load_after = os.getloadavg()[0]
    t_ref = _bench.median(results["reference"])
    rss_ref = _bench.peak(results["reference"]) / 1024
    lines = [
        f"Tree `{root}`: {files:,} files; load average {load_before:.2f} before, "
        f"{load_after:.2f} after. Same plan as the reference: {'yes' if equal else 'NO'} "
        f"({blobs:,} blobs).",
        "",
        "| command | median time | x reference | peak RSS (max of runs) | x reference |",
        "|---|---|---|---|---|",
        f"| `docker-registry garbage-collect --dry-run CONFIG` | {t_ref:.2f} s | 1.00x "
        f"| {rss_ref:.0f} MB | 1.00x |",
    ]
    ok = equal
    for name, label in (
        ("gc", "regtool gc --dry-run --grace 0 --format json --root ROOT"),
        ("ls", "regtool ls --format json --root ROOT"),
    ):
        t = _bench.median(results[name])
        rss = _bench.peak(results[name]) / 1024
        runs_text = ", ".join(f"{r.seconds:.1f}" for r in results[name])
        lines.append(
            f"| `{label}` | {t:.2f} s ({runs_text}) | {t / t_ref:.2f}x | {rss:.0f} MB "
            f"| {rss / rss_ref:.2f}x |"
        )
        ok = ok and rss <= rss_ref and (name != "gc" or t <= 0.3 * t_ref)
    ref_runs = ", ".join(f"{r.seconds:.1f}" for r in results["reference"])
    lines.append("")
    lines.append(f"Reference runs: {ref_runs} s.")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, action="append", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(_bench.REPO)  # the timed runs use this checkout
    os.chdir(_bench.REPO)
    parts = []
    ok = True
    for root in args.root:
        text, fine = measure(root, args.runs)
        parts.append(text)
        ok = ok and fine
    roots = " ".join(f"--root {root}" for root in args.root)
    body = f"""
Machine: {_bench.machine()}; other work shares it (see the load averages).
`python scripts/bench_scale.py {roots} --runs {args.runs}`: each command once to warm the
cache, then {args.runs} alternating rounds; time is the median, memory the largest peak RSS
of the runs (of the process and its worker processes, `/usr/bin/time`). regtool runs as
`python -m regtool` from this checkout. Goal on the 5x tree: both regtool commands at most
the reference's peak memory, gc at most 0.3x its time, the same plan.

{chr(10).join(parts)}
"""
    _bench.write_section(TITLE, body)
    print(body.strip())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
