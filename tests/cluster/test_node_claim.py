"""A daemon claims its node name: an owner key on its lease, created only if absent. A
second daemon with the same name does not publish, says so, keeps serving this host's
links, and takes over once the first has gone. Against the suite's real 3-member etcd."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from integration.util import LINKS, block, block_is, line, read

from hostsyncd._etcd import EtcdClient
from hostsyncd.config import ClusterConfig
from hostsyncd.core.records import owner_key

from .conftest import LEASE_TTL, PUBLISH

pytestmark = pytest.mark.engine


def test_the_claim_is_one_transaction_that_only_an_absent_key_passes(nodes):
    config = ClusterConfig(endpoints=nodes.etcd.endpoints, prefix=nodes.prefix, node="n",
                           timeout=2)  # fmt: skip
    first, second = EtcdClient(config), EtcdClient(config)
    key = owner_key(nodes.prefix, "n")
    try:
        lease1, lease2 = first.grant(LEASE_TTL), second.grant(LEASE_TTL)
        assert first.claim(key, b'{"pid": 1}', lease1) == (True, {})
        ok, holder = second.claim(key, b'{"pid": 2}', lease2)
        assert not ok and int(holder["lease"]) == lease1
        assert json.loads(nodes.etcd.get(key)) == {"pid": 1}  # the loser wrote nothing
        assert first.claim(key, b'{"pid": 1}', lease1)[0]  # a retried claim is still ours
        first.revoke(lease1, 2)
        assert second.claim(key, b'{"pid": 2}', lease2) == (True, {})
        assert json.loads(nodes.etcd.get(key)) == {"pid": 2}
        second.revoke(lease2, 2)
        assert nodes.etcd.get(key) is None  # it went with the lease
    finally:
        first.close()
        second.close()


def _claims(d: Any) -> list[dict[str, Any]]:
    return [e for e in d.logs() if e.get("event", "").startswith("node name held by another")]


def test_a_second_daemon_with_the_same_name_stands_by_and_takes_over(
    nodes, containers_b, containers_c, notify, wait_until
):
    db = containers_b.run("db", labels={PUBLISH: "true"})
    first = nodes.start("b")
    nodes.wait_record("b", db, ipv4=containers_b.ip(db))
    assert nodes.etcd.get(owner_key(nodes.prefix, "b")) is not None

    # Engine c runs a daemon that is also named "b", with a container to publish and a
    # local link of its own.
    other = containers_c.run("other", labels={PUBLISH: "true"})
    target = containers_c.run("tgt")
    dep = containers_c.run("dep", labels={LINKS: target})
    second = nodes.start("c", cluster={"node": "b"}, env={"NOTIFY_SOCKET": str(notify.path)})

    def conflict() -> dict[str, Any] | None:
        state = nodes.cluster_state("c")
        return state if state.get("conflict") else None

    state = wait_until(conflict, timeout=10, what="node c's daemon seeing the name taken",
                       show=lambda: nodes.state("c"))  # fmt: skip
    assert "node name 'b' is held by another daemon" in state["conflict"]
    assert f"pid {first.pid}" in state["conflict"]
    assert state["claimed"] is False and state["published"] == []
    # It keeps serving this host's links.
    path = containers_c.hosts_path(dep)
    wait_until(block_is(path, [line(containers_c.ip(target), target)]), timeout=5,
               what="the local link on c", show=lambda: read(path))  # fmt: skip
    # It said so: once in the log, in STATUS= and in `hostsyncd status`.
    status = nodes.status("c")
    assert "NOT PUBLISHING: node name 'b' is held by another daemon" in status.stdout, status
    wait_until(lambda: any("NOT PUBLISHING: node name b held by another daemon" in m
                           for m in notify.drain()), timeout=5,
               what="STATUS= saying it does not publish")  # fmt: skip
    assert len(_claims(second)) == 1
    # ... and it neither published nor deleted the first one's records.
    time.sleep(1.5)
    published = nodes.records().get("b", {})
    assert db in published and other not in published, published
    assert len(_claims(second)) == 1

    # The first goes without a word (SIGKILL): its lease expires, and the second takes
    # the name over and publishes, within the lease TTL (plus etcd's expiry tick).
    first.proc.kill()
    first.proc.wait()
    killed = time.monotonic()
    wait_until(lambda: other in nodes.records().get("b", {}), timeout=LEASE_TTL + 5,
               interval=0.05, what="the second daemon publishing as b",
               show=nodes.raw)  # fmt: skip
    took = time.monotonic() - killed
    print(f"takeover {took:.2f}s after the first daemon was killed (lease TTL {LEASE_TTL}s)")
    assert took <= LEASE_TTL + 1.0, took
    assert db not in nodes.records().get("b", {})
    owner = json.loads(nodes.etcd.get(owner_key(nodes.prefix, "b")))
    assert owner["pid"] == second.pid
    wait_until(lambda: nodes.cluster_state("c")["claimed"] is True
               and not nodes.cluster_state("c")["conflict"], timeout=3,
               what="c's state: claimed")  # fmt: skip
    second.wait_log(lambda e: e.get("event") == "node name claimed; publishing", timeout=3)
    assert "NOT PUBLISHING" not in nodes.status("c").stdout
    assert block(containers_c.hosts(dep)) == [line(containers_c.ip(target), target)]


def test_a_clean_stop_hands_the_name_over_at_once(nodes, containers_b, containers_c,
                                                  wait_until):  # fmt: skip
    containers_b.run("db", labels={PUBLISH: "true"})
    other = containers_c.run("other", labels={PUBLISH: "true"})
    first = nodes.start("b")
    wait_until(lambda: nodes.cluster_state("b").get("claimed"), timeout=10)
    nodes.start("c", cluster={"node": "b"})
    wait_until(lambda: nodes.cluster_state("c").get("conflict"), timeout=10)
    assert first.stop() == 0  # revokes the lease: the owner key goes at once
    stopped = time.monotonic()
    wait_until(lambda: other in nodes.records().get("b", {}), timeout=5, interval=0.02,
               what="the second daemon publishing as b")  # fmt: skip
    took = time.monotonic() - stopped
    print(f"takeover {took:.2f}s after a clean stop")
    assert took < 1.0, took
