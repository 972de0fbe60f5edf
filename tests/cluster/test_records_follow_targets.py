"""A published record follows its container (recreated, renamed, several networks), and a
node's remote lines are in place when it says READY=1 and after a dependent restarts."""

from __future__ import annotations

import pytest
from integration.util import LINKS, block, block_is, line, read

from .conftest import PUBLISH

pytestmark = pytest.mark.engine


def test_recreated_then_renamed_target_is_republished(nodes, containers, containers_b,
                                                      wait_until):  # fmt: skip
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    nodes.start("b")
    nodes.start("a")
    first_id = containers_b.id(db)
    nodes.wait_record("b", db, ipv4=containers_b.ip(db))
    assert nodes.record("b", db)["id"] == first_id

    # Removed and created again under the same name: a new id (maybe the same address).
    containers_b.rm(db)
    containers_b.run("db", labels={PUBLISH: "true"})
    new_id, new_ip = containers_b.id(db), containers_b.ip(db)
    assert new_id != first_id
    wait_until(lambda: (nodes.record("b", db) or {}).get("id") == new_id, timeout=5,
               what="the record names the new container", show=nodes.raw)  # fmt: skip
    assert nodes.record("b", db)["ipv4"] == new_ip
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(new_ip, db)]), timeout=5, show=lambda: read(path))
    nodes.wait_addresses("a", web, [new_ip])

    # Renamed: the old name's record goes, the new name's comes; the dependent's link
    # (by the old name) loses its line.
    renamed = containers_b.rename(db, "db2")
    wait_until(lambda: nodes.record("b", db) is None and nodes.record("b", renamed),
               timeout=5, what="record moved to the new name", show=nodes.raw)  # fmt: skip
    assert nodes.record("b", renamed)["id"] == new_id
    wait_until(block_is(path, []), timeout=5, what="line gone after the rename")
    assert block(containers.hosts(web)) == []


def test_advertise_network_chooses_the_published_address(nodes, containers, containers_b,
                                                         wait_until):  # fmt: skip
    n1, n2 = containers_b.networks.create("n1"), containers_b.networks.create("n2")
    db = containers_b.run("db", labels={PUBLISH: "true"}, network=n1.name)
    containers_b.connect(db, n2.name)
    web = containers.run("web", labels={LINKS: f"b/{db}"})
    nodes.start("b", cluster={"advertise_network": n2.name})
    nodes.start("a")
    ip2 = containers_b.ip(db, n2.name)
    record = nodes.wait_record("b", db, ipv4=ip2)
    assert record["network"] == n2.name
    assert sorted(record["networks"]) == sorted([n1.name, n2.name])
    wait_until(block_is(containers.hosts_path(web), [line(ip2, db)]), timeout=5)
    nodes.wait_addresses("a", web, [ip2])


def test_ready_waits_for_remote_records_and_a_restarted_dependent_gets_them_back(
    nodes, containers, containers_b, notify, wait_until
):
    db = containers_b.run("db", labels={PUBLISH: "true"})
    web = containers.run("web", labels={LINKS: f"b/{db}:data"})
    nodes.start("b")
    ip = containers_b.ip(db)
    nodes.wait_record("b", db, ipv4=ip)
    want = [line(ip, "data", db)]
    path = containers.hosts_path(web)

    nodes.start("a", env={"NOTIFY_SOCKET": str(notify.path)})
    _, seen = notify.on_ready(lambda: read(path))  # the file the moment READY=1 arrives
    assert block(seen) == want, "remote lines not written before READY=1:\n" + seen

    # Docker rebuilds the dependent's file on restart; the remote line comes back.
    containers.restart(web)
    wait_until(block_is(containers.hosts_path(web), want), timeout=5,
               what="remote line back after the dependent restarted")  # fmt: skip
    assert block(containers.hosts(web)) == want
