"""Lines follow targets and dependents through their lives."""

from __future__ import annotations

import os

import pytest

from .util import LINKS, block_is, line, outside, read, split

pytestmark = pytest.mark.engine


def test_dependent_started_before_its_target(containers, daemon, wait_until):
    d = daemon.start()
    web = containers.run("web", labels={LINKS: containers.name("db")})
    path = containers.hosts_path(web)
    wait_until(block_is(path, []), what="web without its target: no block")
    db = containers.run("db")
    wait_until(block_is(path, [line(containers.ip(db), db)]))
    assert line(containers.ip(db), db) in containers.hosts(web).splitlines()
    assert d.alive()


def test_target_removed_and_recreated_under_the_same_name(containers, networks, daemon, wait_until):
    net = networks.create("n")
    db = containers.run("db", "--ip", net.addr(10), network=net.name)
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(net.addr(10), db)]))

    containers.rm(db)
    wait_until(block_is(path, []), what="the removed target's line gone")

    containers.run("db", "--ip", net.addr(11), network=net.name)
    wait_until(block_is(path, [line(net.addr(11), db)]))
    assert line(net.addr(11), db) in containers.hosts(web).splitlines()


def test_renamed_target_follows_its_new_name(containers, daemon, wait_until):
    db, new = containers.name("db"), containers.name("db-new")
    web = containers.run("web", labels={LINKS: f"{db} {new}"})
    containers.run("db")
    daemon.start()
    path = containers.hosts_path(web)
    ip = containers.ip(db)
    wait_until(block_is(path, [line(ip, db)]))

    containers.rename(db, new)
    wait_until(block_is(path, [line(ip, new)]))
    seen = containers.hosts(web)
    assert line(ip, new) in seen.splitlines()
    assert f"\t{db}\n" not in seen and f"\t{db} " not in seen


def test_network_connect_and_disconnect_at_run_time(containers, networks, daemon, wait_until):
    n1, n2 = networks.create("n1"), networks.create("n2")
    db = containers.run("db")  # default bridge only
    web = containers.run("web", labels={LINKS: f"{db} {db}:pinned@{n2.name}"}, network=n1.name)
    daemon.start()
    path = containers.hosts_path(web)
    bridge_ip = containers.ip(db, "bridge")
    # No shared network: the target's (only) network; the pinned network is missing.
    wait_until(block_is(path, [line(bridge_ip, db)]))

    containers.connect(db, n1.name)  # now shared with web: preferred
    wait_until(block_is(path, [line(containers.ip(db, n1.name), db)]))

    containers.connect(db, n2.name)  # the pinned link appears
    n1_ip, n2_ip = containers.ip(db, n1.name), containers.ip(db, n2.name)
    wait_until(block_is(path, [line(n1_ip, db), line(n2_ip, "pinned", db)]))

    containers.disconnect(db, n1.name)
    wait_until(block_is(path, [line(bridge_ip, db), line(n2_ip, "pinned", db)]))
    containers.disconnect(db, n2.name)
    wait_until(block_is(path, [line(bridge_ip, db)]))
    assert split(containers.hosts(web))[1] == [line(bridge_ip, db)]


def test_dependent_restart_gets_its_block_back_quickly(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: db})
    daemon.start()
    path = containers.hosts_path(web)
    expected = [line(containers.ip(db), db)]
    wait_until(block_is(path, expected))

    for _ in range(2):
        containers.restart(web)  # Docker rebuilds the file from scratch

        def settled() -> str | bool:
            """Our block back, and Docker's rebuild finished: Docker 26 and newer append
            the container's own entry in a later write, which may come after our block
            went back in (it then stands after the block, outside it)."""
            text = block_is(path, expected)()
            return text if text and containers.ip(web) in split(text)[0] else False

        text = wait_until(settled, timeout=5, what="the block back after Docker's rebuild")
        rest, _, begins, ends = split(text)
        assert (begins, ends) == (1, 1)
        assert rest.count("127.0.0.1\tlocalhost") == 1  # Docker's lines, not doubled
    assert split(containers.hosts(web))[1] == expected


def _sentinel_barrier(containers, wait_until, path, expected_now, sentinel):
    """Start `sentinel` (which the dependent links to) and wait for its line.

    The daemon handles events in order, so once the sentinel's line is there, the event
    before it (pause, stop) has been handled too: what the block holds now is its answer.
    """
    containers.run(sentinel)
    ip = containers.ip(sentinel)
    wait_until(block_is(path, [*expected_now, line(ip, containers.name(sentinel))]))


def test_paused_target_keeps_its_lines(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db} {containers.name('sentinel')}"})
    daemon.start()
    path = containers.hosts_path(web)
    db_line = line(containers.ip(db), db)
    wait_until(block_is(path, [db_line]))

    containers.pause(db)
    _sentinel_barrier(containers, wait_until, path, [db_line], "sentinel")
    assert db_line in containers.hosts(web).splitlines()
    containers.unpause(db)


@pytest.mark.parametrize("on_target_stop", ["remove", "keep"])
def test_stopped_target(containers, daemon, wait_until, on_target_stop):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db} {containers.name('sentinel')}"})
    daemon.start(on_target_stop=on_target_stop)
    path = containers.hosts_path(web)
    db_line = line(containers.ip(db), db)
    wait_until(block_is(path, [db_line]))

    containers.stop(db)
    if on_target_stop == "remove":
        wait_until(block_is(path, []), what="the stopped target's line removed")
    else:
        _sentinel_barrier(containers, wait_until, path, [db_line], "sentinel")
        assert db_line in containers.hosts(web).splitlines()


def test_stopped_target_ip_taken_by_another_then_target_restarted(
    containers, networks, daemon, wait_until
):
    """The classic: web -> db; db stops, another container takes db's IP, db comes back."""
    net = networks.create("n")
    db = containers.run("db", network=net.name)
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    path = containers.hosts_path(web)
    docker_lines = containers.hosts(web)
    inode = os.stat(path).st_ino
    old_ip = containers.ip(db)
    daemon.start()
    wait_until(block_is(path, [line(old_ip, db)]))

    containers.stop(db)
    wait_until(block_is(path, []), what="db's line removed once db stopped")
    containers.run("thief", "--ip", old_ip, network=net.name)
    containers.start(db)
    new_ip = containers.ip(db)
    assert new_ip != old_ip

    wait_until(block_is(path, [line(new_ip, db)]))
    seen = containers.hosts(web)  # what web itself reads
    assert split(seen)[1] == [line(new_ip, db)]
    assert old_ip not in seen
    assert outside(seen) == docker_lines  # Docker's own lines intact
    assert os.stat(path).st_ino == inode
    assert read(path) == seen
