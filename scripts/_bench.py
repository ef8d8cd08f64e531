"""Benchmark plumbing: timed runs, medians of alternating runs, docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by the `scripts/bench*.py` scripts; each section says the machine and the commands.\n"
    "Times are medians of alternating runs after a warm-up, measured side by side in one run.\n"
)


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kb: int


def timed(cmd: Sequence[str] | str, *, shell: bool = False) -> Run:
    """Run a command with stdout to /dev/null; wall time and peak RSS of it and its children."""
    wrapped = ["/usr/bin/time", "-f", "%M", *(["sh", "-c", cmd] if shell else cmd)]
    start = time.perf_counter()
    done = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} exited {done.returncode}: {done.stderr[-500:]}")
    rss = int(done.stderr.strip().splitlines()[-1])
    return Run(seconds, rss)


def alternate(
    commands: dict[str, Sequence[str] | str], runs: int, *, shell: bool = False, warmup: int = 1
) -> dict[str, list[Run]]:
    """Warm up each command, then run them in turn `runs` times, alternating the order."""
    for cmd in commands.values():
        for _ in range(warmup):
            timed(cmd, shell=shell)
    results: dict[str, list[Run]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(runs):
        order = names if i % 2 == 0 else list(reversed(names))
        for name in order:
            results[name].append(timed(commands[name], shell=shell))
    return results


def median(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def peak(runs: list[Run]) -> int:
    return max(r.max_rss_kb for r in runs)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    return (
        f"{len(os.sched_getaffinity(0))} cores ({cpu}), {mem_kb // 1024 // 1024} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of docs/benchmarks.md."""
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n")


def own_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def daemon_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (gone ones: 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick
