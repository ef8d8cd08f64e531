#!/usr/bin/env python3
"""gc and ls over an S3 bucket (Ceph RGW): regtool against docker-registry, side by side.

Starts a throwaway RGW (scripts/rgw.py, 1 memstore OSD), builds the synthetic tree
(scripts/mksynthetic.py: 100 repositories x 10 tags, or 500 x 10 with --large; cached under
/tmp/regtool-bench/ by its parameters), uploads it with scripts/s3load.py under the
rootdirectory /registry, and times, alternating, N runs after a warm-up (medians):

- reference: `docker-registry garbage-collect --dry-run CONFIG` on the bucket config
  (AWS_CA_BUNDLE removed from its environment: 2.8.2's s3 driver panics on it);
- regtool: `gc --dry-run --grace 0 --format json --config CONFIG` and
  `ls --config CONFIG --format json` (`python -m regtool` from this checkout);
- for context, the reference on the same tree on local disk.

A command that fails is reported as such and the others still run. The plans must agree:
the blobs the reference says are eligible for deletion against regtool's blob entries.
Writes the section "gc and ls on S3 (Ceph RGW)" of docs/benchmarks.md.

    python scripts/bench_s3.py [--runs 3] [--large] [--only reference]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import rgw  # noqa: E402
import s3load  # noqa: E402

WORK = Path("/tmp/regtool-bench")
SECTION = "gc and ls on S3 (Ceph RGW), {repos} x 10"
BUCKET = "bench"
PREFIX = "/registry"
TAGS = 10
ELIGIBLE = re.compile(r"^blob eligible for deletion: (\S+)\s*$", re.M)
REF_S3 = "reference gc --dry-run, S3"
REF_LOCAL = "reference gc --dry-run, local disk"
OUR_GC = "regtool gc --dry-run, S3"
OUR_LS = "regtool ls, S3"
LABELS = {
    REF_S3: "env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run S3.yml",
    OUR_GC: "regtool gc --dry-run --grace 0 --format json --config S3.yml",
    OUR_LS: "regtool ls --config S3.yml --format json",
    REF_LOCAL: "docker-registry garbage-collect --dry-run LOCAL.yml",
}


@dataclass
class Bench:
    """One command's outcome: its probe output, its times, or why it failed."""

    cmd: list[str]
    stdout: str = ""
    failure: str = ""
    runs: list[_bench.Run] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)  # the command and its children
    server_cpu: list[float] = field(default_factory=list)  # every daemon of the cluster


def synthetic_tree(repos: int, tags: int) -> tuple[Path, dict]:
    """The tree for these parameters, built once under WORK; (root, generator report)."""
    name = f"s3-syn-{repos}x{tags}-seed1"
    root, report, done = WORK / name, WORK / f"{name}.json", WORK / f"{name}.done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        WORK.mkdir(parents=True, exist_ok=True)
        script = _bench.REPO / "scripts" / "mksynthetic.py"
        subprocess.run(
            [sys.executable, str(script), "--out", str(root), "--repos", str(repos)]
            + ["--tags", str(tags), "--seed", "1", "--report", str(report)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        done.touch()
    return root, json.loads(report.read_text())


def local_config(root: Path) -> Path:
    config = root.parent / f"{root.name}-local.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {json.dumps(str(root))}\n"
    )
    return config


def probe(bench: Bench) -> None:
    """The warm-up run: keeps its output for the plan check, or records the failure."""
    try:
        done = subprocess.run(bench.cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        bench.failure = str(e)
        return
    if done.returncode not in (0, 1):
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        bench.failure = f"exit {done.returncode}: {last[:300]}"
    bench.stdout = done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(bench: Bench, pids: Sequence[int]) -> None:
    """One timed run: wall time and peak RSS (_bench.timed), client and server CPU."""
    client, server = _children_cpu(), _bench.daemon_cpu(pids)
    bench.runs.append(_bench.timed(bench.cmd))
    bench.client_cpu.append(_children_cpu() - client)
    bench.server_cpu.append(_bench.daemon_cpu(pids) - server)


def measure(benches: dict[str, Bench], runs: int, pids: Sequence[int]) -> None:
    """Alternate the working commands `runs` times; a failure drops only that command."""
    for bench in benches.values():
        probe(bench)
    names = [n for n, b in benches.items() if not b.failure]
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            bench = benches[name]
            if bench.failure:
                continue
            try:
                timed(bench, pids)
            except RuntimeError as e:
                bench.failure = str(e).splitlines()[-1][:300]
        print(f"round {i + 1}/{runs} done", file=sys.stderr)


def reference_blobs(bench: Bench) -> set[str] | None:
    return None if bench.failure else set(ELIGIBLE.findall(bench.stdout))


def regtool_blobs(bench: Bench) -> set[str] | None:
    if bench.failure:
        return None
    try:
        doc = json.loads(bench.stdout)
        return {e.get("digest") or e["id"] for e in doc["delete"] if e["kind"] == "blob"}
    except (ValueError, KeyError, TypeError) as e:
        bench.failure = f"gc --format json output not understood: {e}"
        return None


def diff(a: set[str], b: set[str], a_name: str, b_name: str) -> str:
    if a == b:
        return "same plan"
    only_a, only_b = sorted(a - b), sorted(b - a)
    return (
        f"DIFFERENT: {len(only_a)} only in {a_name} ({', '.join(only_a[:3])}"
        f"{' ...' if len(only_a) > 3 else ''}), {len(only_b)} only in {b_name} "
        f"({', '.join(only_b[:3])}{' ...' if len(only_b) > 3 else ''})"
    )


def plans(benches: dict[str, Bench], orphans: set[str]) -> list[str]:
    lines = []
    ref = reference_blobs(benches[REF_S3])
    if ref is None:
        lines.append("Reference plan on S3: not available (the reference failed).")
    else:
        lines.append(
            f"Reference on S3 against the generator's orphan list: "
            f"{diff(ref, orphans, 'the reference', 'the generator')} ({len(ref):,} blobs)."
        )
    local = reference_blobs(benches[REF_LOCAL])
    if ref is not None and local is not None:
        lines.append(
            "Reference on S3 against the reference on local disk: "
            f"{diff(ref, local, 'S3', 'disk')}."
        )
    if OUR_GC in benches:
        ours = regtool_blobs(benches[OUR_GC])
        if ours is None or ref is None:
            lines.append("regtool against the reference on S3: not compared (a command failed).")
        else:
            verdict = diff(ours, ref, "regtool", "the reference")
            lines.append(
                f"regtool against the reference on S3: **{verdict}** ({len(ours):,} blobs in "
                f"regtool's plan, {len(ref):,} in the reference's)."
            )
    return lines


def table(benches: dict[str, Bench]) -> str:
    ref = benches[REF_S3]
    t_ref = _bench.median(ref.runs) if ref.runs and not ref.failure else None
    rows = [
        "| measure | command | median | each run (s) | client CPU | RGW CPU | peak RSS "
        "| /ref. S3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, bench in benches.items():
        if bench.failure or not bench.runs:
            rows.append(f"| {name} | `{LABELS[name]}` | FAILED: {bench.failure} |" + " - |" * 5)
            continue
        t = _bench.median(bench.runs)
        ratio = f"{t / t_ref:.3f}x" if t_ref else "-"
        rss = _bench.peak(bench.runs) / 1024
        each = ", ".join(f"{r.seconds:.2f}" for r in bench.runs)
        client = statistics.median(bench.client_cpu)
        server = statistics.median(bench.server_cpu)
        rows.append(
            f"| {name} | `{LABELS[name]}` | {t:.2f} s | {each} | {client:.2f} s | {server:.2f} s "
            f"| {rss:.0f} MB | {ratio} |"
        )
    return "\n".join(rows)


def commands(s3_config: Path, local: Path, only: str | None) -> dict[str, Bench]:
    regtool = [sys.executable, "-m", "regtool"]
    benches = {
        REF_S3: Bench(
            ["env", "-u", "AWS_CA_BUNDLE", "docker-registry", "garbage-collect", "--dry-run"]
            + [str(s3_config)]
        ),
    }
    if only != "reference":
        benches[OUR_GC] = Bench(
            [*regtool, "gc", "--dry-run", "--grace", "0", "--format", "json"]
            + ["--config", str(s3_config)]
        )
        benches[OUR_LS] = Bench([*regtool, "ls", "--config", str(s3_config), "--format", "json"])
    benches[REF_LOCAL] = Bench(["docker-registry", "garbage-collect", "--dry-run", str(local)])
    return benches


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="500 repositories, not 100")
    parser.add_argument("--only", choices=("reference",), help="time only the reference")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    repos = 500 if args.large else 100
    os.environ["PYTHONPATH"] = str(_bench.REPO)  # regtool runs from this checkout
    load = os.getloadavg()[0]
    began = time.monotonic()
    root, report = synthetic_tree(repos, TAGS)
    files = sum(len(names) for _, _, names in os.walk(root / "docker"))
    with rgw.rgw_cluster(osds=1) as cluster:
        loaded = s3load.load_tree(cluster, BUCKET, root, PREFIX)
        print(f"uploaded {loaded.objects:,} objects in {loaded.seconds:.1f} s", file=sys.stderr)
        s3_config = s3load.write_config(cluster, BUCKET, PREFIX, WORK / f"{root.name}-s3.yml")
        benches = commands(s3_config, local_config(root), args.only)
        measure(benches, args.runs, list(cluster.pids.values()))
    verdicts = plans(benches, set(report["orphaned_blobs"]))
    failed = [n for n, b in benches.items() if b.failure]
    ratios = []
    ref = benches[REF_S3]
    if ref.runs and not ref.failure:
        t_ref = _bench.median(ref.runs)
        for name in (OUR_GC, OUR_LS, REF_LOCAL):
            b = benches.get(name)
            if b is not None and b.runs and not b.failure:
                ratios.append(f"{name}/reference on S3: **{_bench.median(b.runs) / t_ref:.3f}x**")
    scope = (
        "Only the reference was timed (`--only reference`); regtool's rows come with a run "
        "without it.\n"
        if args.only
        else ""
    )
    body = f"""
Machine: {_bench.machine()}; load average {load:.2f} at the start,
{os.getloadavg()[0]:.2f} at the end (other work shares it).
Server: Ceph RGW (Debian) from `scripts/rgw.py`: 1 monitor, 1 memstore OSD, radosgw on
127.0.0.1, sharing the 2 cores with the clients. Tree: `scripts/mksynthetic.py --repos {repos}
--tags {TAGS} --seed 1` (20 families, 20% of the tags untagged by a manifest delete):
{files:,} files, uploaded by `scripts/s3load.py` (obstore, {s3load.INFLIGHT} PUTs in flight) as
{loaded.objects:,} objects ({loaded.bytes:,} bytes) under `s3://{BUCKET}{PREFIX}/` in
{loaded.seconds:.1f} s. {args.runs} alternating runs after a warm-up, medians; client CPU: the
command's own (user + system, with its children), RGW CPU: the cluster daemons' during it;
`python scripts/bench_s3.py{" --large" if args.large else ""} --runs {args.runs}\
{" --only reference" if args.only else ""}`. regtool runs as `python -m regtool` from this
checkout; the reference is docker-registry 2.8.2. S3.yml is the config `s3load.write_config`
writes (storage.s3 with regionendpoint, rootdirectory {PREFIX}); LOCAL.yml the same tree on disk.
{scope}
{table(benches)}

{"; ".join(ratios) if ratios else "No ratio: the reference on S3 did not run."}
{" ".join(verdicts)}
{f"Failed: {', '.join(failed)}." if failed else ""}
Whole run: {time.monotonic() - began:.0f} s.
"""
    body = re.sub(r"\n{3,}", "\n\n", body)
    if not args.no_write:
        _bench.write_section(SECTION.format(repos=repos), body)
    print(body.strip())
    return 1 if failed or any("DIFFERENT" in v for v in verdicts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
