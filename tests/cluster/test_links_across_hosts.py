"""Links across hosts: what a node publishes, and how another node's dependents follow it.

Host "a" is the suite's default engine, "b" and "c" are engines of their own; each runs a
hostsyncd with node = its name, all on one etcd key prefix unique to the test.
"""

from __future__ import annotations

import re
import time

import pytest
from integration.util import LINKS, block, block_is, line, read

from .conftest import LEASE_TTL, PUBLISH

pytestmark = pytest.mark.engine


def connected(nodes, *names: str):
    """A wait_until condition: every named node's state file shows the cluster connected."""

    def check() -> bool:
        return all(nodes.cluster_state(n).get("connected") is True for n in names)

    check.__name__ = f"cluster connected on {names}"
    return check


def block_lines(path) -> list[str]:
    return block(read(path))


def test_labelled_running_container_is_published_until_it_stops(nodes, engine_b, containers_b,
                                                                 wait_until):  # fmt: skip
    early = containers_b.run("early", labels={PUBLISH: "true"})
    plain = containers_b.run("plain")
    declined = containers_b.run("declined", labels={PUBLISH: "false"})
    nodes.start("b")
    late = containers_b.run("late", labels={PUBLISH: "true"})

    for name in (early, late):  # found by the first sync, and by the start event
        record = wait_until(lambda name=name: nodes.record("b", name), timeout=5,
                            what=f"{nodes.key('b', name)} in etcd",
                            show=nodes.raw)  # fmt: skip
        assert record["id"] == containers_b.id(name)
        assert re.fullmatch(r"[0-9a-f]{64}", record["id"])
        assert record["name"] == name
        assert record["node"] == "b"
        assert record["ipv4"] == containers_b.ip(name)
        assert record["ipv4"].startswith(engine_b.cidr.rsplit(".", 1)[0] + ".")
        assert record["network"] == "bridge"
        assert record["networks"] == ["bridge"]
        assert not record.get("ipv6")
    def mine(names) -> list[str]:  # b's engine may hold other runs' containers
        return sorted(n for n in names if n.startswith(containers_b.prefix))

    published = nodes.records()
    assert sorted(published) == ["b"], published
    assert mine(published["b"]) == sorted([early, late]), "only hostsyncd.publish=true"
    assert plain not in published["b"] and declined not in published["b"]

    # Every record hangs on the daemon's lease (so it goes when the daemon dies).
    leases = {v[1] for v in nodes.etcd.range_prefix_with_leases(nodes.prefix + "/").values()}
    assert len(leases) == 1 and 0 not in leases, leases

    wait_until(lambda: mine(nodes.cluster_state("b")["published"]) == sorted([early, late]),
               what="the state file lists what is published",
               show=lambda: nodes.state("b"))  # fmt: skip
    assert nodes.cluster_state("b")["node"] == "b"
    assert nodes.cluster_state("b")["enabled"] is True

    containers_b.stop(early)
    wait_until(lambda: nodes.record("b", early) is None, timeout=3,
               what=f"{early}'s record removed after it stopped", show=nodes.raw)  # fmt: skip
    assert nodes.record("b", late) is not None
    containers_b.rm(late)
    wait_until(lambda: not mine(nodes.records().get("b", {})), timeout=3,
               what="no records left after rm", show=nodes.raw)  # fmt: skip


def test_remote_target_start_reaches_dependent_within_a_second_and_follows_ip_changes(
    nodes, containers, containers_b, wait_until
):
    net = containers_b.networks.create("n")
    db = containers_b.run("db", labels={PUBLISH: "true"}, network=net.name)
    containers_b.stop(db)
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    path = containers.hosts_path(web)
    nodes.start("a")
    nodes.start("b")
    wait_until(connected(nodes, "a", "b"), show=lambda: (nodes.state("a"), nodes.state("b")))
    assert block_lines(path) == []

    started = time.monotonic()
    containers_b.start(db)
    ip = containers_b.ip(db, net.name)
    want = [line(ip, db)]

    def arrived() -> bool:
        return block_lines(path) == want

    wait_until(arrived, timeout=5, interval=0.005, what=f"{want} in {web}",
               show=lambda: read(path))  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"docker start on b -> line on a: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"took {elapsed:.3f}s"
    assert block(containers.hosts(web)) == want  # as the container sees it
    # ... and it is this test's daemons that did it.
    nodes.wait_record("b", db, ipv4=ip, timeout=0.5)
    nodes.wait_addresses("a", web, [ip], timeout=2)

    # db stops: its line goes (its IP is free on b); a thief takes the IP; db comes back on
    # a new one, and the dependent follows.
    containers_b.stop(db)
    wait_until(block_is(path, []), timeout=3, what="line dropped after db stopped")
    thief = containers_b.run("thief")
    containers_b.docker("network", "connect", "--ip", ip, net.name, thief)
    containers_b.start(db)
    new_ip = containers_b.ip(db, net.name)
    assert new_ip != ip
    wait_until(block_is(path, [line(new_ip, db)]), timeout=3, what="line with db's new IP")
    assert block(containers.hosts(web)) == [line(new_ip, db)]
    links = nodes.wait_addresses("a", web, [new_ip], timeout=2)
    assert links[0]["problem"] is None


def test_bare_name_stays_on_this_host_by_default(nodes, containers, containers_b, wait_until):
    """Any container creator on any node may publish any name: by default a bare name
    never resolves to a remote record, not even once the local target is gone."""
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"{db}:database b/{db}:viab"})
    nodes.start("b")
    nodes.start("a")
    ip_b = containers_b.ip(db)
    path = containers.hosts_path(web)
    nodes.wait_record("b", db, ipv4=ip_b)
    wait_until(block_is(path, [line(ip_b, "viab", db)]), timeout=5, show=nodes.raw)
    links = {link["spec"]: link for link in nodes.wait_addresses("a", web, [ip_b])}
    bare = links[f"{db}:database"]
    assert bare["addresses"] == [] and "node/target" in bare["problem"], bare

    local = containers.run("db")
    ip_a = containers.ip(local)
    want = [line(ip_a, "database", db), line(ip_b, "viab", db)]
    wait_until(block_is(path, want), timeout=5, what="the local db")
    nodes.wait_addresses("a", web, [ip_a, ip_b])
    containers.rm(local)  # removed: the name must not fall through to b's record
    wait_until(block_is(path, [line(ip_b, "viab", db)]), timeout=5, what="local line gone")
    nodes.wait_addresses("a", web, [ip_b])
    time.sleep(0.5)
    assert block(containers.hosts(web)) == [line(ip_b, "viab", db)]


def test_with_resolve_bare_names_a_bare_name_without_a_local_container_resolves_remotely(
    nodes, containers, containers_b, wait_until
):
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"{db}:database"})
    # A compose dependent's bare names never leave the host, option or not.
    composed = containers.run("composed", labels={
        LINKS: db, "com.docker.compose.project": "proj", "com.docker.compose.service": "x"})
    nodes.start("b")
    nodes.start("a", cluster={"resolve_bare_names": True})
    ip_b = containers_b.ip(db)
    path = containers.hosts_path(web)
    nodes.wait_record("b", db, ipv4=ip_b)
    wait_until(block_is(path, [line(ip_b, "database", db)]), timeout=5, show=nodes.raw)
    assert block(containers.hosts(web)) == [line(ip_b, "database", db)]
    links = nodes.wait_addresses("a", web, [ip_b])
    assert links[0]["problem"] is None

    # A local container of that name wins over the published one ...
    local = containers.run("db")
    ip_a = containers.ip(local)
    wait_until(block_is(path, [line(ip_a, "database", db)]), timeout=5,
               what="the local db wins")  # fmt: skip
    # ... and once it is gone, the remote record applies again.
    nodes.wait_addresses("a", web, [ip_a])
    containers.rm(local)
    wait_until(block_is(path, [line(ip_b, "database", db)]), timeout=5,
               what="back to b's db")  # fmt: skip
    nodes.wait_addresses("a", web, [ip_b])
    (link,) = nodes.links_of("a", composed)
    assert link["addresses"] == [] and "node/target" in link["problem"], link
    assert block(containers.hosts(composed)) == []


def test_name_published_by_two_other_nodes_is_ambiguous_but_node_specs_resolve(
    nodes, containers, containers_b, containers_c, wait_until
):
    db_b = containers_b.run("db", labels={PUBLISH: "true"})
    db_c = containers_c.run("db", labels={PUBLISH: "true"})
    assert db_b == db_c
    db = db_b
    web = containers.run("web", labels={LINKS: f"{db} b/{db}:fromb c/{db}:fromc"})
    for node in ("b", "c"):
        nodes.start(node)
    nodes.start("a", cluster={"resolve_bare_names": True})
    ip_b, ip_c = containers_b.ip(db), containers_c.ip(db)
    nodes.wait_record("b", db, ipv4=ip_b)
    nodes.wait_record("c", db, ipv4=ip_c)
    path = containers.hosts_path(web)
    want = [line(ip_b, "fromb", db), line(ip_c, "fromc", db)]
    wait_until(block_is(path, want), timeout=5, show=nodes.raw)
    assert sorted(block(containers.hosts(web))) == sorted(want)

    def bare_link():
        links = {link["spec"]: link for link in nodes.links_of("a", web)}
        bare = next((link for spec, link in links.items() if "/" not in spec), None)
        return bare if bare and bare.get("problem") else None

    bare = wait_until(lambda: (link := bare_link()) and "several nodes" in link["problem"]
                      and link, what="the bare spec reported ambiguous",
                      show=lambda: nodes.state("a"))  # fmt: skip
    assert bare["addresses"] == []
    # Still ambiguous a moment later: no line for the bare name appears.
    time.sleep(0.5)
    assert sorted(block(containers.hosts(web))) == sorted(want)

    # Once only b publishes it, the bare name resolves to b's record.
    containers_c.stop(db)
    wait_until(block_is(path, [line(ip_b, db), line(ip_b, "fromb", db)]), timeout=5,
               what="bare name resolved to b once c stopped publishing")  # fmt: skip
    nodes.wait_addresses("a", web, [ip_b, ip_b])


def test_sigterm_of_the_publisher_revokes_its_lease_at_once(nodes, containers, containers_b,
                                                             wait_until):  # fmt: skip
    ttl = 10
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    db_b = nodes.start("b", cluster={"lease_ttl": ttl})
    nodes.start("a")
    path = containers.hosts_path(web)
    nodes.wait_record("b", db, ipv4=containers_b.ip(db))
    wait_until(block_is(path, [line(containers_b.ip(db), db)]), timeout=5, show=nodes.raw)
    nodes.wait_addresses("a", web, [containers_b.ip(db)])

    started = time.monotonic()
    assert db_b.stop() == 0
    stopped = time.monotonic() - started
    # The records are gone as soon as the daemon has exited: the lease was revoked.
    assert nodes.records().get("b") is None, nodes.raw()
    wait_until(block_is(path, []), timeout=2, interval=0.01,
               what="b's line gone well before the lease would expire")  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"SIGTERM -> exit {stopped:.2f}s, -> line gone {elapsed:.2f}s (lease_ttl {ttl}s)")
    assert elapsed < ttl / 3
    assert block(containers.hosts(web)) == []


def test_sigkill_of_the_publisher_drops_its_lines_when_the_lease_expires(
    nodes, containers, containers_b, wait_until
):
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"b/{db}:data"})
    d_b = nodes.start("b")
    nodes.start("a")
    path = containers.hosts_path(web)
    want = [line(containers_b.ip(db), "data", db)]
    nodes.wait_record("b", db, ipv4=containers_b.ip(db))
    wait_until(block_is(path, want), timeout=5, show=nodes.raw)
    nodes.wait_addresses("a", web, [containers_b.ip(db)])

    d_b.kill()
    killed = time.monotonic()
    assert nodes.records().get("b"), "the records outlive a SIGKILL until the lease expires"
    wait_until(block_is(path, []), timeout=LEASE_TTL + 1, interval=0.02,
               what=f"b's line gone within lease_ttl ({LEASE_TTL}s) + 1s",
               show=nodes.raw)  # fmt: skip
    print(f"SIGKILL -> line gone {time.monotonic() - killed:.2f}s (lease_ttl {LEASE_TTL}s)")
    assert block(containers.hosts(web)) == []
    assert nodes.records().get("b") is None

    nodes.start("b")
    wait_until(block_is(path, want), timeout=5, what="b's line back after its daemon restarts")
    assert block(containers.hosts(web)) == want
    nodes.wait_addresses("a", web, [containers_b.ip(db)])
