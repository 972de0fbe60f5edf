"""Cross-host propagation: from a target's `docker start` on host b until a dependent on
host a has its new IP, through both daemons and a 3-member etcd on loopback. Measured in
the same cycles as local propagation on b: a dependent there with the label (hostsyncd)
and one with `--link` (Docker), all watched by one poller from the same start call.

Host b is a second private engine; host a is the bench engine. Each cycle moves the target
to a new IP as bench/propagation.py does: stop it, let another container take the old IP,
start it.
"""

from __future__ import annotations

import os
from pathlib import Path

from etcdcluster import EtcdCluster  # in scripts/, which lib puts on sys.path
from lib import Bench, alias_ip, hostsyncd, summary, time_start, wait_for

ENGINE_B = Path(os.environ.get("HSD_BENCH_ROOT_B", "/tmp/hsdbench-b"))
ETCD_ROOT = Path(os.environ.get("HSD_BENCH_ETCD", "/tmp/hsdbench-etcd"))


def measure(bench: Bench, workdir: Path, cycles: int = 20) -> dict[str, object]:
    etcd = EtcdCluster(ETCD_ROOT, client_port=23891, peer_port=23901)
    etcd.ensure_running()
    host_b = Bench(ENGINE_B, bridge="hsdbenchb0", cidr="10.240.0.1/24")
    prefix = f"/hsdbench/{bench.prefix.rstrip('-')}"
    cluster = {"enabled": True, "endpoints": etcd.endpoints, "prefix": prefix}
    try:
        with hostsyncd(host_b, workdir / "b", cluster={**cluster, "node": "b"}), \
                hostsyncd(bench, workdir / "a", cluster={**cluster, "node": "a"}):
            return _cycles(bench, host_b, cycles)
    finally:
        host_b.cleanup()
        etcd.delete_prefix(prefix + "/")


def _cycles(host_a: Bench, host_b: Bench, cycles: int) -> dict[str, object]:
    db_name = host_b.name("db")
    db = host_b.run("db", labels={"hostsyncd.publish": "true"})
    link_dep = host_b.run("linked", links={db_name: "db"})
    local_dep = host_b.run("labelled", labels={"hostsyncd.links": f"{db_name}:db"})
    remote_dep = host_a.run("remote", labels={"hostsyncd.links": f"b/{db_name}:db"})
    files = {
        "link": host_b.hosts_path(link_dep),
        "local": host_b.hosts_path(local_dep),
        "cross_host": host_a.hosts_path(remote_dep),
    }
    for path in files.values():
        wait_for(lambda p=path: alias_ip(p.read_bytes(), "db") == host_b.ip(db), 15)
    times: dict[str, list[float]] = {side: [] for side in files}
    for n in range(cycles):
        old_ip = host_b.ip(db)
        host_b.api.stop(db, timeout=0)
        thief = host_b.run(f"thief{n}")
        assert host_b.ip(thief) == old_ip, "the old IP was not reused"
        for side, elapsed in time_start(host_b, db, files, old_ip).items():
            times[side].append(elapsed * 1000)
    result: dict[str, object] = {side: summary(ms) for side, ms in times.items()}
    cross, local = result["cross_host"], result["local"]
    result["cross_over_local_median"] = cross["median"] / local["median"]
    result["cross_over_link_median"] = cross["median"] / result["link"]["median"]
    result["raw_ms"] = times
    return result
