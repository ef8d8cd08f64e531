#!/usr/bin/env python3
"""Benchmark S3 client libraries (boto3, obstore) against a real Ceph RGW on 127.0.0.1.

Issue #9 asks for the client to be chosen by measurement. Two workloads on one bucket:
(a) GET each of N small objects (1 KiB), (b) list the same N keys (flat, paginated).
boto3 runs GETs on a thread pool, obstore (Rust object_store bindings) as asyncio tasks
with a bounded number in flight. Runs alternate; medians; client and server CPU per request.

    python scripts/bench_s3client.py [--objects 2000] [--runs 7] [--threads 32] [--inflight 64]

Needs the packages of scripts/rgw.py and `pip install boto3 obstore` (neither is a
dependency of regtool yet).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import rgw  # noqa: E402
import s3load  # noqa: E402

BUCKET = "bench"
PREFIX = "small/"


@dataclass(frozen=True)
class Sample:
    seconds: float
    client_cpu: float  # this process, all threads
    server_cpu: float  # every daemon of the cluster


def measure(work: Callable[[], int], expected: int, pids: list[int]) -> Sample:
    cpu0, srv0, t0 = time.process_time(), _bench.daemon_cpu(pids), time.perf_counter()
    done = work()
    seconds = time.perf_counter() - t0
    sample = Sample(seconds, time.process_time() - cpu0, _bench.daemon_cpu(pids) - srv0)
    if done != expected:
        raise RuntimeError(f"expected {expected} results, got {done}")
    return sample


def boto3_client(c: rgw.Cluster, pool: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        region_name=c.region,
        aws_access_key_id=c.access_key,
        aws_secret_access_key=c.secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool),
    )


def obstore_store(c: rgw.Cluster):
    return s3load.obstore_store(s3load.settings_of(c), BUCKET)


def fill(store, keys: list[str], inflight: int) -> None:
    import obstore

    async def run() -> None:
        sem = asyncio.Semaphore(inflight)

        async def put(key: str) -> None:
            async with sem:
                await obstore.put_async(store, key, os.urandom(1024))

        await asyncio.gather(*(put(k) for k in keys))

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    import boto3
    import obstore

    keys = [f"{PREFIX}{i:06d}" for i in range(args.objects)]
    load = os.getloadavg()[0]
    began = time.monotonic()
    with rgw.rgw_cluster(osds=1) as cluster:
        start_s = time.monotonic() - began
        pids = list(cluster.pids.values())
        b3 = boto3_client(cluster, args.threads)
        b3.create_bucket(Bucket=BUCKET)
        store = obstore_store(cluster)
        fill(store, keys, args.inflight)

        def boto3_gets() -> int:
            def one(key: str) -> int:
                return len(b3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

            with ThreadPoolExecutor(args.threads) as pool:
                return sum(1 for n in pool.map(one, keys) if n == 1024)

        def obstore_gets() -> int:
            async def run() -> int:
                sem = asyncio.Semaphore(args.inflight)

                async def one(key: str) -> int:
                    async with sem:
                        got = await obstore.get_async(store, key)
                        return len(await got.bytes_async())

                sizes = await asyncio.gather(*(one(k) for k in keys))
                return sum(1 for n in sizes if n == 1024)

            return asyncio.run(run())

        def boto3_list() -> int:
            pages = b3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
            return sum(len(p.get("Contents", [])) for p in pages)

        def obstore_list() -> int:
            return sum(len(chunk) for chunk in obstore.list(store, PREFIX, chunk_size=1000))

        workloads = {
            "gets": {"boto3": boto3_gets, "obstore": obstore_gets},
            "list": {"boto3": boto3_list, "obstore": obstore_list},
        }
        results: dict[str, dict[str, list[Sample]]] = {}
        for name, clients in workloads.items():
            results[name] = {c: [] for c in clients}
            for fn in clients.values():  # warm-up: connections, imports, caches
                measure(fn, args.objects, pids)
            order = list(clients)
            for i in range(args.runs):
                for c in order if i % 2 == 0 else reversed(order):
                    results[name][c].append(measure(clients[c], args.objects, pids))
    load_after = os.getloadavg()[0]

    def med(samples: list[Sample], attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in samples)

    def mean(samples: list[Sample], attr: str) -> float:
        # CPU times tick in 10 ms steps: the mean over all runs resolves them better
        return statistics.fmean(getattr(s, attr) for s in samples)

    rows, summary = [], []
    for name, label, calls in (
        ("gets", f"{args.objects:,} GETs of 1 KiB", args.objects),
        ("list", f"list {args.objects:,} keys", -(-args.objects // 1000)),
    ):
        for client in ("boto3", "obstore"):
            s = results[name][client]
            how = (
                (
                    f"{args.threads} threads"
                    if client == "boto3"
                    else f"async, {args.inflight} in flight"
                )
                if name == "gets"
                else "1,000 keys a page"
            )
            per = 1e6 / (args.objects if name == "gets" else calls)
            unit = "request" if name == "gets" else "page"
            rows.append(
                f"| {label} | {client} ({how}) | {med(s, 'seconds'):.3f} s "
                f"| {mean(s, 'client_cpu') * per:,.0f} µs/{unit} "
                f"| {mean(s, 'server_cpu') * per:,.0f} µs/{unit} |"
            )
        ratio = med(results[name]["obstore"], "seconds") / med(results[name]["boto3"], "seconds")
        summary.append(f"{label}: obstore/boto3 **{ratio:.2f}x**")
        print(
            f"{label}: boto3 {med(results[name]['boto3'], 'seconds'):.3f} s, "
            f"obstore {med(results[name]['obstore'], 'seconds'):.3f} s, ratio {ratio:.2f}"
        )

    body = f"""
Machine: {_bench.machine()}.
Load average {load:.2f} at the start, {load_after:.2f} at the end (other work shares it).
Server: Ceph RGW 16 (Debian), 1 monitor + 1 memstore OSD + radosgw on 127.0.0.1,
started by `scripts/rgw.py` (this run: {start_s:.1f} s until S3 answered); client and
cluster share the 2 cores. Clients: boto3 {boto3.__version__}, obstore {obstore.__version__},
one client object each, created before timing. {args.objects:,} objects of 1 KiB;
{args.runs} alternating runs after a warm-up, medians.
`python scripts/bench_s3client.py --objects {args.objects} --runs {args.runs}`.
Client CPU: this process's CPU time (all threads) per request or page; server CPU: the
cluster daemons' CPU time; both means over all timed runs.

| workload | client | median | client CPU | server CPU |
|---|---|---|---|---|
{chr(10).join(rows)}

{"; ".join(summary)}.
"""
    _bench.write_section("s3 client", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
