"""Fifty nodes: one real hostsyncd (node "a", on the bench engine) in a cluster of 49
simulated nodes, 200 records each (9,800 in all), against a real 3-member etcd.

The simulated nodes are lightweight publishers in this process: each holds a lease of its
own (kept alive from one thread), claims its node name as hostsyncd does
(`<prefix>/nodes/<node>/owner`, created only if absent) and writes its records in
hostsyncd's own format (`<prefix>/nodes/<node>/containers/<name>`, JSON, on its lease).

Measured:
- a remote change (one record's address) until a dependent on the real node has it in its
  hosts file: p50 and p95, at 1,000 records (5 nodes) and at 9,800 (49 nodes);
- the daemon's CPU per remote change at both sizes (its CPU over the changes, less its
  idle CPU over as long);
- the daemon's RSS and peak RSS with 9,800 records;
- a whole simulated node expiring (its keep-alives stop): from its last keep-alive until
  the dependents' lines to its records are gone, against the lease TTL.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import requests
from etcdcluster import EtcdCluster  # in scripts/, which lib puts on sys.path
from lib import Bench, alias_ip, hostsyncd, proc_cpu, proc_status, summary, wait_for

ETCD_ROOT = Path(os.environ.get("HSD_BENCH_ETCD", "/tmp/hsdbench-etcd"))
ETCD_CLIENT_PORT = int(os.environ.get("HSD_BENCH_ETCD_CLIENT_PORT") or 23891)
ETCD_PEER_PORT = int(os.environ.get("HSD_BENCH_ETCD_PEER_PORT") or 23901)
NODES = 49
RECORDS = 200
LEASE_TTL = 5  # the simulated nodes'; the real daemon keeps hostsyncd's default
TXN_OPS = 100  # etcd allows 128 operations per transaction by default
DEPENDENTS = 5  # on the real node, each linking to r000 of one of the first 5 nodes


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def record_value(node: str, name: str, ipv4: str) -> bytes:
    """A record exactly as hostsyncd writes one (core/records.py `_encode`)."""
    data = {"id": "", "name": name, "node": node, "network": "lan", "ipv4": ipv4,
            "ipv6": "", "networks": ["lan"]}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class Etcd:
    """A small JSON-gateway client on one keep-alive connection."""

    def __init__(self, endpoint: str) -> None:
        self.url = endpoint
        self.session = requests.Session()
        self.session.trust_env = False

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.session.post(self.url + path, json=body, timeout=10)
        reply.raise_for_status()
        out: dict[str, Any] = reply.json()
        return out


class SimulatedNode:
    def __init__(self, etcd: Etcd, prefix: str, index: int) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.index = index
        self.node = f"n{index:02d}"
        self.lease = 0
        self.alive = True

    def key(self, name: str) -> str:
        return f"{self.prefix}/nodes/{self.node}/containers/{name}"

    def ip(self, i: int, cycle: int = 0) -> str:
        return f"10.{100 + self.index}.{(cycle // 200) % 250}.{i % 200 + 1 + cycle % 50}"

    def start(self) -> None:
        self.lease = int(self.etcd.call("/v3/lease/grant", {"TTL": str(LEASE_TTL)})["ID"])
        owner = _b64(f"{self.prefix}/nodes/{self.node}/owner")
        claimed = self.etcd.call("/v3/kv/txn", {
            "compare": [{"key": owner, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": owner, "value": _b64(json.dumps(
                {"node": self.node, "host": "bench", "pid": os.getpid()})),
                "lease": str(self.lease)}}],
        })  # fmt: skip
        if not claimed.get("succeeded"):
            raise RuntimeError(f"{self.node}: name already claimed")
        puts = [{"request_put": {"key": _b64(self.key(f"r{i:03d}")),
                                 "value": _b64(record_value(self.node, f"r{i:03d}", self.ip(i))),
                                 "lease": str(self.lease)}} for i in range(RECORDS)]  # fmt: skip
        for at in range(0, len(puts), TXN_OPS):
            self.etcd.call("/v3/kv/txn", {"success": puts[at:at + TXN_OPS]})

    def change(self, name: str, ipv4: str) -> None:
        self.etcd.call("/v3/kv/put", {"key": _b64(self.key(name)),
                                      "value": _b64(record_value(self.node, name, ipv4)),
                                      "lease": str(self.lease)})  # fmt: skip

    def keepalive(self) -> None:
        self.etcd.call("/v3/lease/keepalive", {"ID": str(self.lease)})

    def revoke(self) -> None:
        if self.lease:
            self.etcd.call("/v3/lease/revoke", {"ID": str(self.lease)})


class KeepAlive(threading.Thread):
    """Keeps every live simulated node's lease alive, every TTL/3, from one thread."""

    def __init__(self, endpoint: str, nodes: list[SimulatedNode]) -> None:
        super().__init__(daemon=True)
        self.etcd = Etcd(endpoint)
        self.nodes = nodes
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.wait(LEASE_TTL / 3):
            with self.lock:
                alive = [n for n in self.nodes if n.alive and n.lease]
            for node in alive:
                self.etcd.call("/v3/lease/keepalive", {"ID": str(node.lease)})

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def measure(bench: Bench, workdir: Path, cycles: int = 40, nodes: int = NODES
            ) -> dict[str, object]:  # fmt: skip
    etcd = EtcdCluster(ETCD_ROOT, client_port=ETCD_CLIENT_PORT, peer_port=ETCD_PEER_PORT)
    etcd.ensure_running()
    prefix = f"/hsdbench/{bench.prefix.rstrip('-')}-fifty"
    client = Etcd(etcd.endpoints[0])
    simulated = [SimulatedNode(client, prefix, i + 1) for i in range(nodes)]
    keeper = KeepAlive(etcd.endpoints[1 % len(etcd.endpoints)], simulated)
    cluster = {"enabled": True, "endpoints": etcd.endpoints, "prefix": prefix, "node": "a"}
    try:
        for node in simulated[:DEPENDENTS]:
            node.start()
        keeper.start()
        last = simulated[-1]
        deps = [bench.run(f"dep{i}", labels={"hostsyncd.links": f"{n.node}/r000:db"})
                for i, n in enumerate(simulated[:DEPENDENTS])]  # fmt: skip
        expiring = bench.run("expiring", labels={
            "hostsyncd.links": f"{last.node}/r000:db {last.node}/r199:db2"})
        files = [bench.hosts_path(d) for d in deps]
        with hostsyncd(bench, workdir, cluster=cluster) as daemon:
            for path, node in zip(files, simulated, strict=False):
                wait_for(lambda p=path, n=node: alias_ip(p.read_bytes(), "db") == n.ip(0), 20)
            small = _changes(daemon.pid, simulated[:DEPENDENTS], files, cycles, first=1)
            small["records"] = DEPENDENTS * RECORDS
            for node in simulated[DEPENDENTS:]:
                node.start()
            total = len(simulated) * RECORDS
            state = workdir / "state.json"
            started = time.monotonic()
            wait_for(lambda: _remote_count(state) == total, 60, 0.05)
            loaded_s = time.monotonic() - started
            large = _changes(daemon.pid, simulated[:DEPENDENTS], files, cycles,
                             first=cycles + 1)  # fmt: skip
            large["records"] = total
            status = proc_status(daemon.pid)
            exp_path = bench.hosts_path(expiring)
            wait_for(lambda: alias_ip(exp_path.read_bytes(), "db2") is not None, 20)
            expiry = _expire(keeper, last, exp_path)
            rss_mb, hwm_mb = status["VmRSS"] / 1024, status["VmHWM"] / 1024
    finally:
        keeper.stopping.set()
        for node in simulated:
            with contextlib.suppress(requests.RequestException):
                node.revoke()
        etcd.delete_prefix(prefix + "/")
    return {
        "nodes": len(simulated) + 1, "records": len(simulated) * RECORDS,
        "lease_ttl_s": LEASE_TTL, "small": small, "large": large,
        "loaded_s": round(loaded_s, 2), "rss_mb": rss_mb, "hwm_mb": hwm_mb,
        "expiry_s": expiry, "cpu_growth": large["cpu_ms_per_change"]
        / max(small["cpu_ms_per_change"], 1e-6),
    }


def _remote_count(state: Path) -> int:
    try:
        remote = json.loads(state.read_text())["cluster"]["remote"]
    except (OSError, ValueError, KeyError):
        return -1
    return sum(len(names) for names in remote.values())


def _changes(pid: int, nodes: list[SimulatedNode], files: list[Path], cycles: int,
             first: int) -> dict[str, Any]:  # fmt: skip
    """`cycles` record changes, one at a time: the latency of each to its dependent's
    file, and the daemon's CPU per change less its idle CPU."""
    time.sleep(1.5)  # let the last load settle (state file, pass)
    idle_from, idle_cpu = time.monotonic(), proc_cpu(pid)
    time.sleep(3)
    idle_rate = (proc_cpu(pid) - idle_cpu) / (time.monotonic() - idle_from)
    latencies = []
    began, cpu_before = time.monotonic(), proc_cpu(pid)
    for n in range(first, first + cycles):
        node, path = nodes[n % len(nodes)], files[n % len(nodes)]
        ip = node.ip(0, n)
        t0 = time.perf_counter()
        node.change("r000", ip)
        while alias_ip(path.read_bytes(), "db") != ip:
            if time.perf_counter() - t0 > 10:
                raise RuntimeError(f"{path}: {ip} did not arrive")
            time.sleep(0.0002)
        latencies.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)  # one change at a time: the daemon's pass is over
    elapsed = time.monotonic() - began
    cpu = proc_cpu(pid) - cpu_before - idle_rate * elapsed
    return {"latency_ms": summary(latencies), "raw_ms": latencies,
            "cpu_ms_per_change": max(cpu, 0.0) * 1000 / cycles,
            "idle_cpu_ms_per_s": idle_rate * 1000}


def _expire(keeper: KeepAlive, node: SimulatedNode, path: Path) -> float:
    """Stop the node's keep-alives right after one: seconds from that keep-alive until
    the dependent's lines to its records are gone."""
    with keeper.lock:
        node.alive = False
        t0 = time.monotonic()
        node.keepalive()
    while alias_ip(path.read_bytes(), "db") or alias_ip(path.read_bytes(), "db2"):
        if time.monotonic() - t0 > LEASE_TTL + 20:
            raise RuntimeError("the node's records never expired")
        time.sleep(0.005)
    return time.monotonic() - t0
