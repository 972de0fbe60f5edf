"""etcd faults: one member killed changes nothing; one member hung delays a change by seconds
only; the whole cluster away keeps the last known remote lines, shows the cluster degraded,
and converges when etcd is back.

These run last in the suite (zz): they take etcd members down. The `nodes` fixture brings
a cluster an earlier failure left down back up, and each test restarts what it stopped.
"""

from __future__ import annotations

import time

import pytest
from integration.util import LINKS, block, block_is, line, read

from .conftest import LEASE_TTL, PUBLISH
from .test_links_across_hosts import connected

pytestmark = pytest.mark.engine


def _move(containers_b, net, db: str, thief: str) -> str:
    """Stop db, let thief take its address, start db again: returns db's new address."""
    old = containers_b.ip(db, net.name)
    containers_b.stop(db)
    containers_b.docker("network", "connect", "--ip", old, net.name, thief)
    containers_b.start(db)
    new = containers_b.ip(db, net.name)
    assert new != old
    return new


def _status_line(nodes, node: str) -> str:
    proc = nodes.status(node)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("cluster:")]
    assert len(lines) == 1, f"exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}"
    return lines[0]


def test_one_member_killed_changes_nothing(nodes, containers, containers_b, wait_until):
    etcd = nodes.etcd
    net = containers_b.networks.create("n")
    db = containers_b.run("db", labels={PUBLISH: "true"}, network=net.name)
    thief = containers_b.run("thief")
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    nodes.start("b")
    nodes.start("a")
    path = containers.hosts_path(web)
    want = [line(containers_b.ip(db, net.name), db)]
    nodes.wait_record("b", db, ipv4=containers_b.ip(db, net.name))
    wait_until(block_is(path, want), timeout=5, show=nodes.raw)
    nodes.wait_addresses("a", web, [containers_b.ip(db, net.name)])
    wait_until(connected(nodes, "a", "b"), show=lambda: nodes.state("a"))

    # Kill the member node a talks to (or the first one), the most disruptive choice.
    endpoint = nodes.cluster_state("a").get("endpoint") or etcd.endpoints[0]
    victim = etcd.member(endpoint if endpoint in etcd.endpoints else 0)
    etcd.kill(victim)
    try:
        # Lines stay for longer than a lease lives: b's lease is kept alive elsewhere.
        deadline = time.monotonic() + LEASE_TTL + 1
        while time.monotonic() < deadline:
            assert block(read(path)) == want, read(path)
            assert nodes.daemon("a").alive() and nodes.daemon("b").alive()
            time.sleep(0.05)
        assert block(containers.hosts(web)) == want

        # A later change on b still reaches a.
        new_ip = _move(containers_b, net, db, thief)
        wait_until(block_is(path, [line(new_ip, db)]), timeout=5,
                   what="db's new IP with one member down", show=nodes.raw)  # fmt: skip
        nodes.wait_addresses("a", web, [new_ip])
        wait_until(connected(nodes, "a", "b"), timeout=10,
                   what="both nodes connected with one member down",
                   show=lambda: (nodes.cluster_state("a"), nodes.cluster_state("b")))  # fmt: skip
        assert "DEGRADED" not in _status_line(nodes, "a")
    finally:
        etcd.start(victim)
    assert block(containers.hosts(web)) == [line(new_ip, db)]


def test_a_hung_member_delays_a_change_by_seconds_not_minutes(nodes, containers, containers_b,
                                                              wait_until):  # fmt: skip
    """SIGSTOP (a hang, like a partition: connections stay open and nothing answers) of the
    member node a talks to. etcd keeps its quorum; a change on b must still reach a within
    a few request timeouts, and a must not report itself connected to a dead member."""
    etcd = nodes.etcd
    timeout = 2.0
    net = containers_b.networks.create("n")
    db = containers_b.run("db", labels={PUBLISH: "true"}, network=net.name)
    thief = containers_b.run("thief")
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    nodes.start("b", cluster={"lease_ttl": 10, "timeout": timeout})
    nodes.start("a", cluster={"lease_ttl": 10, "timeout": timeout})
    path = containers.hosts_path(web)
    nodes.wait_record("b", db, ipv4=containers_b.ip(db, net.name))
    wait_until(block_is(path, [line(containers_b.ip(db, net.name), db)]), timeout=5)
    wait_until(connected(nodes, "a", "b"), show=lambda: nodes.state("a"))

    endpoint = nodes.cluster_state("a").get("endpoint") or etcd.endpoints[0]
    victim = etcd.member(endpoint if endpoint in etcd.endpoints else 0)
    etcd.pause(victim)
    try:
        started = time.monotonic()
        new_ip = _move(containers_b, net, db, thief)
        nodes.wait_record("b", db, ipv4=new_ip, timeout=4 * timeout + 2)
        print(f"record updated {time.monotonic() - started:.2f}s after the move")
        wait_until(block_is(path, [line(new_ip, db)]), timeout=4 * timeout + 4, interval=0.05,
                   what=f"a follows db's new IP with member {victim.name} hung "
                   f"(the old IP {containers_b.ip(thief, net.name)} is the thief's now)",
                   show=lambda: (read(path), nodes.cluster_state("a")))  # fmt: skip
        print(f"a converged {time.monotonic() - started:.2f}s after the move")
    finally:
        etcd.resume(victim)


def test_etcd_away_keeps_last_lines_reports_degraded_and_converges_when_back(
    nodes, containers, containers_b, notify, wait_until
):
    etcd = nodes.etcd
    net = containers_b.networks.create("n")
    db = containers_b.run("db", labels={PUBLISH: "true"}, network=net.name)
    thief = containers_b.run("thief")
    web = containers.run("web", labels={LINKS: f"b/{db}:data"})
    nodes.start("b")
    nodes.start("a", env={"NOTIFY_SOCKET": str(notify.path)})
    path = containers.hosts_path(web)
    old_ip = containers_b.ip(db, net.name)
    old = [line(old_ip, "data", db)]
    nodes.wait_record("b", db, ipv4=old_ip)
    wait_until(block_is(path, old), timeout=5, show=nodes.raw)
    nodes.wait_addresses("a", web, [old_ip])
    wait_until(connected(nodes, "a", "b"), show=lambda: nodes.state("a"))
    line_a = _status_line(nodes, "a")
    assert "connected" in line_a and "DEGRADED" not in line_a, line_a

    etcd.stop_all()
    outage = time.monotonic()
    try:
        def degraded() -> dict | None:
            cluster = nodes.cluster_state("a")
            return cluster if cluster.get("connected") is False else None

        cluster = wait_until(degraded, timeout=15, what="state file shows the cluster degraded",
                             show=lambda: nodes.state("a"))  # fmt: skip
        print(f"degraded after {time.monotonic() - outage:.2f}s: {cluster}")
        assert cluster["reason"], cluster
        assert isinstance(cluster["since"], float | int) and cluster["since"] > time.time() - 60
        assert "DEGRADED" in _status_line(nodes, "a")

        def status_sent() -> list[str]:
            notify.collect(0.1)
            return [m for m in notify.sent("STATUS=") if "cluster degraded" in m]

        wait_until(status_sent, timeout=10, what="STATUS= with 'cluster degraded'",
                   show=lambda: notify.sent("STATUS="))  # fmt: skip
        # The last known remote records stay: the line is kept, as the container sees it.
        assert block(containers.hosts(web)) == old
        assert [ip for link in nodes.links_of("a", web) for ip in link["addresses"]] == [old_ip]
        assert nodes.daemon("a").alive() and nodes.daemon("b").alive()

        # db moves on b while etcd is away; a cannot know yet.
        new_ip = _move(containers_b, net, db, thief)
        time.sleep(LEASE_TTL + 1)  # longer than a lease lives: still nothing dropped on a
        assert block(containers.hosts(web)) == old
    finally:
        etcd.start_all()
    back = time.monotonic()

    wait_until(block_is(path, [line(new_ip, "data", db)]), timeout=15,
               what="a converged on db's new IP after etcd came back",
               show=nodes.raw)  # fmt: skip
    print(f"converged {time.monotonic() - back:.2f}s after etcd came back")
    nodes.wait_addresses("a", web, [new_ip])
    wait_until(connected(nodes, "a", "b"), timeout=15,
               show=lambda: (nodes.cluster_state("a"), nodes.cluster_state("b")))  # fmt: skip
    line_a = _status_line(nodes, "a")
    assert "connected" in line_a and "DEGRADED" not in line_a, line_a
    assert block(containers.hosts(web)) == [line(new_ip, "data", db)]
    assert nodes.record("b", db)["ipv4"] == new_ip
