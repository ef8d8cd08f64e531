#!/usr/bin/env python3
"""Before and after: this checkout against an earlier revision, side by side in one run.

Every issue that touches a measured path must show that no figure in docs/benchmarks.md got
worse beyond noise. This runs the same measurements for an earlier revision of regtool
(BASE), this checkout (AFTER) and the reference where one exists, alternating the order
each round, and writes medians and ratios to the "before and after" section:

- `ls --format json` and `gc --dry-run` on the synthetic tree (reference: docker-registry
  garbage-collect --dry-run), as in bench_ls.py and bench_gc.py;
- `verify --jobs 1` and `--jobs 2` over 24 x 32 MiB (reference: openssl dgst), as in
  bench_verify.py;
- `serve`: a monolithic PUT and a GET of a 256 MiB blob with curl, and `wrk -t2 -c16`
  manifest GETs (reference: docker-registry serve), as in bench_serve.py.

    python scripts/bench_compare.py --base REV_OR_CHECKOUT [--runs 5] [--only cli|serve]

BASE is a folder holding another checkout, or a git revision of this repository (checked
out once as a detached worktree under /tmp/regtool-bench/). Both run as `python -m regtool`
with PYTHONPATH pointing at their checkout, so start-up is counted alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import bench_gc  # noqa: E402
import bench_serve  # noqa: E402
import bench_verify  # noqa: E402

WORK = Path("/tmp/regtool-bench")
MIB = 1 << 20
VERSIONS = ("before", "after")


def checkout(base: str) -> Path:
    """The folder of the BASE revision: as given, or a detached worktree made once."""
    if Path(base).is_dir():
        return Path(base).resolve()
    rev = subprocess.run(
        ["git", "-C", str(_bench.REPO), "rev-parse", "--short", base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = WORK / f"base-{rev}"
    if not (folder / "regtool").is_dir():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(_bench.REPO), "worktree", "add", "--detach", str(folder), rev],
            check=True,
            capture_output=True,
        )
    return folder


def regtool(tree: Path) -> list[str]:
    return ["env", f"PYTHONPATH={tree}", sys.executable, "-m", "regtool"]


def cli_rows(trees: dict[str, Path], runs: int) -> list[tuple[str, dict[str, float]]]:
    """Medians for ls, gc --dry-run and verify, each with its reference."""
    root, config = bench_gc.choose_tree(None, None)
    verify_root = bench_verify.DEFAULT_ROOT
    files = bench_verify.ensure_tree(verify_root)
    bench_verify.warm(files)
    groups: list[tuple[str, dict[str, Sequence[str]]]] = [
        (
            "ls --format json, synthetic tree",
            {
                v: [*regtool(t), "ls", "--root", str(root), "--format", "json"]
                for v, t in trees.items()
            },
        ),
        (
            "gc --dry-run --grace 0, synthetic tree",
            {
                "reference": ["docker-registry", "garbage-collect", "--dry-run", str(config)],
                **{
                    v: [
                        *regtool(t),
                        "gc",
                        "--dry-run",
                        "--grace",
                        "0",
                        "--format",
                        "json",
                        "--root",
                        str(root),
                    ]
                    for v, t in trees.items()
                },
            },
        ),
    ]
    for jobs in (1, 2):
        groups.append(
            (
                f"verify --jobs {jobs}, 24 x 32 MiB",
                {
                    "reference": ["openssl", "dgst", "-sha256", *map(str, files)],
                    **{
                        v: [
                            *regtool(t),
                            "verify",
                            "--root",
                            str(verify_root),
                            "--format",
                            "json",
                            "--jobs",
                            str(jobs),
                        ]
                        for v, t in trees.items()
                    },
                },
            )
        )
    rows = []
    for label, commands in groups:
        results = _bench.alternate(commands, runs)
        rows.append((label, {name: _bench.median(r) for name, r in results.items()}))
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}s" for k, v in rows[-1][1].items()))
    return rows


@contextmanager
def serve(tree: Path, root: Path) -> Iterator[str]:
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*regtool(tree), "serve", "--root", str(root), "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    try:
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"regtool serve ({tree}) did not start: {line!r}")
        yield line.removeprefix("listening on http://")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def serve_rows(trees: dict[str, Path], runs: int) -> list[tuple[str, dict[str, float]]]:
    """Medians of a 256 MiB PUT and GET, and of three wrk rounds, for every server."""
    work = WORK / "compare-serve"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    layout = work / "layout"
    bench_serve.write_image(layout, 4 * MIB)
    big = work / "blob256"
    digest = bench_serve.write_blob(big, 256 * MIB)
    put: dict[str, list[float]] = {}
    get: dict[str, list[float]] = {}
    rps: dict[str, list[float]] = {}
    with ExitStack() as stack:
        hosts = {"reference": stack.enter_context(bench_serve.run_reference(work / "ref", work))[0]}
        for version, tree in trees.items():
            hosts[version] = stack.enter_context(serve(tree, work / version))
        for host in hosts.values():
            bench_serve.push_image(layout, host)
        names = list(hosts)
        for n in range(runs + 1):
            for name in names if n % 2 == 0 else names[::-1]:
                host = hosts[name]
                location = bench_serve.start_upload(host, f"blob{n}")
                t_put = _bench.timed(bench_serve.put_cmd(location, big, digest)).seconds
                t_get = _bench.timed(bench_serve.get_cmd(host, f"blob{n}", digest)).seconds
                if n:  # the first round warms up
                    put.setdefault(name, []).append(t_put)
                    get.setdefault(name, []).append(t_get)
        for n in range(3):
            for name in names if n % 2 == 0 else names[::-1]:
                url = f"http://{hosts[name]}/v2/bench/manifests/64m"
                rps.setdefault(name, []).append(bench_serve.wrk_rate(url, name))
    shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    rows = [
        ("serve: PUT of a 256 MiB blob (curl)", {k: med(v) for k, v in put.items()}),
        ("serve: GET of it (curl)", {k: med(v) for k, v in get.items()}),
        ("serve: manifest GETs, wrk -t2 -c16 -d5s, req/s", {k: med(v) for k, v in rps.items()}),
    ]
    for label, values in rows:
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return rows


def render(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| measure | reference | before | after | after/before | after/reference |",
        "|---|---|---|---|---|---|",
    ]
    for label, values in rows:
        rate = "req/s" in label
        unit = "" if rate else " s"
        fmt = (lambda x: f"{x:,.0f}") if rate else (lambda x: f"{x:.3f}")  # noqa: E731
        ref = values.get("reference")
        before, after = values["before"], values["after"]
        lines.append(
            f"| {label} | {fmt(ref) + unit if ref else '-'} | {fmt(before)}{unit} | "
            f"{fmt(after)}{unit} | {after / before:.2f}x | "
            f"{f'{after / ref:.2f}x' if ref else '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a git revision or another checkout")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("cli", "serve"))
    args = parser.parse_args()
    base = checkout(args.base)
    trees = {"before": base, "after": _bench.REPO}
    revs = {
        v: subprocess.run(
            ["git", "-C", str(t), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        for v, t in trees.items()
    }
    load = os.getloadavg()[0]
    rows: list[tuple[str, dict[str, float]]] = []
    if args.only in (None, "cli"):
        rows += cli_rows(trees, args.runs)
    if args.only in (None, "serve"):
        rows += serve_rows(trees, args.runs)
    body = f"""
Machine: {_bench.machine()}; load average {load:.2f} at the start.
before: `{revs["before"]}`, after: `{revs["after"]}` (plus any uncommitted change). Medians of
{args.runs} alternating runs after a warm-up (wrk: 3 rounds), every version in the same run;
`python scripts/bench_compare.py --base {args.base}`. Times in seconds unless marked; for
req/s higher is better. Reference: docker-registry 2.8.2, or openssl for verify.

{render(rows)}
"""
    _bench.write_section("before and after", body)
    print(body.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
