"""Start and stop a throwaway Ceph RGW (S3) on 127.0.0.1 for tests and benchmarks.

One monitor, N memstore OSDs and one radosgw, each a separate daemon, everything
(config, data, logs, pid files, sockets) inside one folder. Needs the Debian packages
ceph-mon ceph-osd radosgw ceph-common python3-rados uuid-runtime, and root.

    python scripts/rgw.py start --dir D [--osds 3]   # prints endpoint and keys as JSON
    python scripts/rgw.py stop --dir D

or, from Python:

    with rgw_cluster(osds=1) as c:
        c.endpoint, c.access_key, c.secret_key, c.pids
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "RGWTESTACCESSKEY0001"
SECRET_KEY = "rgwtestsecretkey0000000000000000000000001"
REGION = "us-east-1"
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common python3-rados uuid-runtime"
RGW_POOLS = (
    ".rgw.root",
    "default.rgw.log",
    "default.rgw.control",
    "default.rgw.meta",
    "default.rgw.buckets.index",
    "default.rgw.buckets.data",
    "default.rgw.buckets.non-ec",
)
# The rados bindings are built for Debian's own interpreter, not necessarily ours.
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 60.0
STATE_FILE = "cluster.json"
REAP_WAIT = 3.0

# Runs under SYSTEM_PYTHON: makes the OSD ids (printed as one JSON line), creates
# radosgw's pools while the OSDs boot, then waits until every OSD is up ("up" line).
_HELPER = r"""
import json, sys, threading, time
import rados
conf, count, pools, deadline = sys.argv[1:5]
count, pools, deadline = int(count), pools.split(","), float(deadline)
r = rados.Rados(conffile=conf, name="client.admin")
r.connect(timeout=int(deadline - time.time()) + 1)
def cmd(**kw):
    ret, out, err = r.mon_command(json.dumps(kw), b"")
    if ret != 0:
        raise SystemExit(f"ceph {kw['prefix']}: {ret} {err}")
    return out
ids = []
for u in sys.argv[5:]:
    ids.append(json.loads(cmd(prefix="osd new", uuid=u, format="json"))["osdid"])
print(json.dumps(ids), flush=True)
def pool(name):
    cmd(prefix="osd pool create", pool=name, pg_num=8, pgp_num=8)
    cmd(prefix="osd pool application enable", pool=name, app="rgw", yes_i_really_mean_it=True)
threads = [threading.Thread(target=pool, args=(p,)) for p in pools]
for t in threads: t.start()
for t in threads: t.join()
while time.time() < deadline:
    osds = json.loads(cmd(prefix="osd dump", format="json"))["osds"]
    if len([o for o in osds if o["up"]]) >= count:
        print("up", flush=True)
        break
    time.sleep(0.05)
else:
    raise SystemExit("OSDs not up in time")
r.shutdown()
"""


@dataclass(frozen=True)
class Cluster:
    dir: Path
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    pids: dict[str, int]  # daemon name ("mon.a", "osd.0", "client.rgw.a") -> pid

    def to_json(self) -> str:
        return json.dumps(
            {
                "dir": str(self.dir),
                "endpoint": self.endpoint,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "region": self.region,
                "pids": self.pids,
            }
        )


class RgwError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    tools = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "uuidgen")
    return [t for t in tools if shutil.which(t) is None] + (
        [] if Path(SYSTEM_PYTHON).exists() else [SYSTEM_PYTHON]
    )


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open until each is chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf(d: Path, fsid: str, mon_v2: int, mon_v1: int, rgw: int, osds: int, mem_bytes: int) -> str:
    # OSDs pick free ports in a random window below the ephemeral range.
    low = random.randrange(10000, 30000, 100)
    return f"""[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_port_min = {low}
ms_bind_port_max = {low + 2000}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
auth_allow_insecure_global_id_reclaim = true
keyring = /dev/null
run_dir = {d}/run
admin_socket = {d}/run/$cluster-$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
mon_cluster_log_file = {d}/log/cluster.log
crash_dir = {d}/crash
mon_data = {d}/mon/$cluster-$id
osd_data = {d}/osd/$cluster-$id
rgw_data = {d}/rgw/$cluster-$id
osd_pool_default_size = {min(osds, 3)}
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.1
paxos_min_wait = 0.01
osd_objectstore = memstore
memstore_device_bytes = {mem_bytes}
osd_class_dir = /usr/lib/x86_64-linux-gnu/rados-classes
osd_heartbeat_interval = 1
osd_heartbeat_grace = 4
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_data_avail_warn = 2

[client]
ms_mon_client_mode = crc

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{rgw} tcp_nodelay=1
rgw_dns_name = localhost
rgw_init_timeout = 60
"""


def _run(args: list[str], conf: Path, timeout: float) -> str:
    try:
        done = subprocess.run(
            [*args, "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=max(timeout, 1.0),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise RgwError(f"{args[0]} timed out") from e
    if done.returncode != 0:
        raise RgwError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout


def _wait_pid(pidfile: Path, deadline: float) -> int:
    """Daemonized processes re-parent to PID 1: find them by their pid file."""
    while time.monotonic() < deadline:
        try:
            text = pidfile.read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise RgwError(f"no pid file {pidfile}")


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RgwError(f"radosgw did not listen on 127.0.0.1:{port}")


def start(
    d: Path,
    *,
    osds: int = 1,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    memstore_bytes: int = 4 << 30,
    timeout: float = START_TIMEOUT,
) -> Cluster:
    """Start the cluster in folder d (created; must be empty). Stops what it began on error."""
    missing = missing_tools()
    if missing:
        raise RgwError(f"missing {' '.join(missing)}: apt-get install {PACKAGES}")
    d = d.resolve()
    d.mkdir(parents=True, exist_ok=True)
    if any(d.iterdir()):
        raise RgwError(f"{d} is not empty")
    try:
        return _start(d, osds, access_key, secret_key, memstore_bytes, timeout)
    except BaseException:
        stop(d)
        raise


def _start(
    d: Path, osds: int, access_key: str, secret_key: str, mem: int, timeout: float
) -> Cluster:
    deadline = time.monotonic() + timeout
    left = lambda: deadline - time.monotonic()  # noqa: E731
    for sub in ("run", "log", "crash", "mon", "osd", "rgw"):
        (d / sub).mkdir()
    mon_v2, mon_v1, rgw_port = _free_ports(3)
    conf = d / "ceph.conf"
    fsid = str(uuid.uuid4())
    conf.write_text(_conf(d, fsid, mon_v2, mon_v1, rgw_port, osds, mem))
    endpoint = f"http://127.0.0.1:{rgw_port}"
    (d / STATE_FILE).write_text(json.dumps({"endpoint": endpoint}))
    monmap = d / "monmap"
    addrs = f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]"
    _run(
        ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", addrs, str(monmap)], conf, left()
    )
    _run(["ceph-mon", "-i", "a", "--mkfs", "--monmap", str(monmap)], conf, left())
    _run(["ceph-mon", "-i", "a"], conf, left())
    pids = {"mon.a": _wait_pid(d / "run" / "mon.a.pid", deadline)}

    uuids = [str(uuid.uuid4()) for _ in range(osds)]
    helper = subprocess.Popen(
        [
            SYSTEM_PYTHON,
            "-c",
            _HELPER,
            str(conf),
            str(osds),
            ",".join(RGW_POOLS),
            str(time.time() + left()),
            *uuids,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert helper.stdout is not None
        line = helper.stdout.readline()
        if not line:
            raise RgwError(f"cluster set-up failed: {helper.communicate()[1].strip()[-800:]}")
        ids = json.loads(line)
        for i in ids:
            (d / "osd" / f"ceph-{i}").mkdir()
        mkfs = [
            subprocess.Popen(
                ["ceph-osd", "-i", str(i), "--mkfs", "--osd-uuid", u, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            for i, u in zip(ids, uuids, strict=True)
        ]
        for p in mkfs:
            if p.wait(timeout=left()) != 0:
                raise RgwError(f"ceph-osd --mkfs failed: {p.stderr.read().decode()[-800:]}")
        boot = [
            subprocess.Popen(
                ["ceph-osd", "-i", str(i), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            for i in ids
        ]
        for i, p in zip(ids, boot, strict=True):
            if p.wait(timeout=left()) != 0:
                raise RgwError(f"ceph-osd -i {i} failed: {p.stderr.read().decode()[-800:]}")
            pids[f"osd.{i}"] = _wait_pid(d / "run" / f"osd.{i}.pid", deadline)
        out, err = helper.communicate(timeout=left())
        if helper.returncode != 0 or "up" not in out:
            raise RgwError(f"cluster set-up failed: {err.strip()[-800:]}")
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
    _run(["radosgw", "-n", "client.rgw.a"], conf, left())
    pids["client.rgw.a"] = _wait_pid(d / "run" / "client.rgw.a.pid", deadline)
    _wait_port(rgw_port, deadline)
    _run(
        [
            "radosgw-admin",
            "user",
            "create",
            "--uid=test",
            "--display-name=test",
            f"--access-key={access_key}",
            f"--secret-key={secret_key}",
        ],
        conf,
        left(),
    )
    cluster = Cluster(d, endpoint, access_key, secret_key, REGION, pids)
    (d / STATE_FILE).write_text(cluster.to_json())
    return cluster


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (PID 1 may be slow to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_ceph(pid: int, d: Path) -> bool:
    """Only kill a pid that is still a ceph daemon of this folder (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(d / "ceph.conf").encode() in cmdline


def pids_in(d: Path) -> list[int]:
    pids = []
    for f in sorted((d / "run").glob("*.pid")) if (d / "run").is_dir() else []:
        try:
            pids.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def kill(d: Path, name: str, timeout: float = 10.0) -> None:
    """SIGKILL one daemon of the cluster ("osd.1") and wait until it is gone."""
    d = d.resolve()
    pid = int((d / "run" / f"{name}.pid").read_text().strip())
    _kill_all(d, [pid], timeout)


def _kill_all(d: Path, pids: list[int], timeout: float) -> None:
    pids = [p for p in pids if _is_ceph(p, d)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise RgwError(f"ceph daemons still alive: {[p for p in pids if alive(p)]}")
        time.sleep(0.01)
    # Dead now; their parent is PID 1, which reaps them in its own time (about 1 s here).
    # Wait a little for that so that no <defunct> entry outlives stop, but never fail on it.
    reap_deadline = time.monotonic() + REAP_WAIT
    while time.monotonic() < reap_deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.02)


def stop(d: Path, timeout: float = 10.0) -> None:
    """SIGKILL every daemon of the cluster (a throwaway memstore cluster needs no clean stop)."""
    d = d.resolve()
    _kill_all(d, pids_in(d), timeout)


@contextmanager
def rgw_cluster(osds: int = 1, d: Path | None = None, **kw: object) -> Iterator[Cluster]:
    """A running cluster for the with-block, in d or a temp folder (removed afterwards)."""
    tmp = None
    if d is None:
        tmp = tempfile.mkdtemp(prefix="regtool-rgw-")
        d = Path(tmp)
    try:
        cluster = start(d, osds=osds, **kw)  # type: ignore[arg-type]
        try:
            yield cluster
        finally:
            stop(d)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start a cluster in DIR; print endpoint and keys")
    p_start.add_argument("--dir", type=Path, required=True)
    p_start.add_argument("--osds", type=int, default=1)
    p_stop = sub.add_parser("stop", help="SIGKILL the cluster's daemons in DIR")
    p_stop.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            if args.osds < 1:
                parser.error("--osds must be at least 1")
            began = time.monotonic()
            cluster = start(args.dir, osds=args.osds)
            print(cluster.to_json())
            print(f"started in {time.monotonic() - began:.1f} s", file=sys.stderr)
        else:
            stop(args.dir)
    except RgwError as e:
        print(f"rgw: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
