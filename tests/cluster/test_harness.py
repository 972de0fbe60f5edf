"""The harness itself: the etcd cluster survives a member's SIGKILL and a full stop, the
hosts are separate engines, and a daemon per node starts with the cluster config."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import etcdcluster

pytestmark = pytest.mark.engine


def test_etcd_cluster_kill_restart_stop_start(etcd, nodes, wait_until):
    key = nodes.prefix + "/harness"
    etcd.put(key, "1")
    assert etcd.healthy()
    assert len(etcd.endpoints) == 3
    assert all(url.startswith("http://127.0.0.1:") for url in etcd.endpoints)

    victim = etcd.members[0]
    etcd.kill(victim)
    assert not etcd.running(victim)
    assert not etcd.member_healthy(victim)
    etcd.put(key, "2")  # the two others still have a quorum
    etcd.start(victim)
    assert etcd.running(victim) and etcd.member_healthy(victim)
    # The restarted member catches up from its data dir and the leader.
    assert wait_until(lambda: etcd._call(victim.client_url, "/v3/kv/range",
                      {"key": etcdcluster._b64(key)}).get("kvs"), timeout=5)  # fmt: skip

    etcd.stop_all()
    assert not any(etcd.running(m) for m in etcd.members)
    with pytest.raises(Exception, match="no etcd member answered"):
        etcd.get(key)
    started = time.monotonic()
    etcd.start_all()
    print(f"start_all took {time.monotonic() - started:.2f}s")
    assert etcd.healthy()
    assert etcd.get(key) == "2"


def test_hosts_are_separate_engines(engine, engine_b, engine_c, containers, containers_b,
                                    containers_c):  # fmt: skip
    assert len({engine.host, engine_b.host, engine_c.host}) == 3
    a = containers.run("db")
    b = containers_b.run("db")
    c = containers_c.run("db")
    assert a == b == c  # one name on every host
    ips = {containers.ip(a), containers_b.ip(b), containers_c.ip(c)}
    assert len(ips) == 3
    assert containers_b.ip(b).startswith(engine_b.cidr.rsplit(".", 1)[0] + ".")
    assert containers_c.ip(c).startswith(engine_c.cidr.rsplit(".", 1)[0] + ".")
    assert containers.id(a) != containers_b.id(b)


def test_daemons_start_with_the_cluster_config(nodes, containers, containers_b, wait_until):
    da = nodes.start("a")
    db = nodes.start("b")
    text = da.config.read_text()
    assert "[cluster]" in text
    assert f'prefix = "{nodes.prefix}"' in text
    assert 'node = "a"' in text
    assert "endpoints = [" + ", ".join(map(json.dumps, nodes.etcd.endpoints)) + "]" in text
    assert nodes.factory("a").cli("check-config", str(da.config)).returncode == 0
    wait_until(lambda: nodes.state_file("a").exists() and nodes.state_file("b").exists(),
               what="both state files")  # fmt: skip
    assert nodes.state_file("a") != nodes.state_file("b")
    assert da.alive() and db.alive()
