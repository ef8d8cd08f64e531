#!/usr/bin/env python3
"""Benchmark `regtool ls --format json` against `find ROOT/ -type f` on the synthetic tree.

Target (issue #2): at most 0.5x the time of find, peak memory under 300 MB, warm cache.

    python scripts/bench_ls.py [--root /tmp/regtool-bench/synthetic] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

DEFAULT_ROOT = Path("/tmp/regtool-bench/synthetic")


def ensure_tree(root: Path) -> None:
    if (root / "docker").is_dir():
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(_bench.REPO / "scripts" / "mksynthetic.py"), "--out", str(root)],
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ensure_tree(args.root)
    regtool = shutil.which("regtool") or "regtool"
    find_cmd = f"find {args.root}/ -type f"
    ls_cmd = f"{regtool} ls --root {args.root} --format json"
    results = _bench.alternate({"find": find_cmd, "regtool ls": ls_cmd}, args.runs, shell=True)
    t_find, t_ls = _bench.median(results["find"]), _bench.median(results["regtool ls"])
    rss_mb = _bench.peak(results["regtool ls"]) / 1024
    files = int(
        subprocess.run(
            f"{find_cmd} | wc -l", shell=True, capture_output=True, text=True, check=True
        ).stdout
    )
    ratio = t_ls / t_find
    body = f"""
Machine: {_bench.machine()}.
Tree: `scripts/mksynthetic.py` defaults (2,000 repositories x 10 tags, 20 families sharing 3
base layers, 2 own layers per tag, 20% of tags untagged by a manifest delete): {files:,} files.
Warm page cache, {args.runs} alternating runs after a warm-up; `python scripts/bench_ls.py`.

| command | median | peak RSS |
|---|---|---|
| `{find_cmd} > /dev/null` | {t_find:.2f} s | - |
| `regtool ls --root ROOT --format json > /dev/null` | {t_ls:.2f} s | {rss_mb:.0f} MB |

Ratio regtool/find: **{ratio:.2f}x** (target at most 0.5x); peak memory {rss_mb:.0f} MB
(target under 300 MB; the largest of regtool and its worker processes).
"""
    _bench.write_section("ls", body)
    print(body)
    return 0 if ratio <= 0.5 and rss_mb < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
