"""Container shapes beyond the plain one: a dependent that mounts its own /etc/hosts, and a
dependent on the host's network."""

from __future__ import annotations

import json
import time

import pytest

from .util import LINKS, block_is, line

pytestmark = pytest.mark.engine


def test_a_dependent_that_mounts_its_own_hosts_file_is_reported_not_written(
    containers, daemon, wait_until, tmp_path
):
    """`-v FILE:/etc/hosts`: the container reads FILE, never the file the engine keeps for
    it. Writing there would claim an update no container sees; FILE is the user's."""
    mine = tmp_path / "myhosts"
    mine.write_bytes(b"127.0.0.1\tlocalhost\n192.0.2.1\tmine\n")
    db = containers.run("db")
    web = containers.run("web", "-v", f"{mine}:/etc/hosts", labels={LINKS: db})
    plain = containers.run("plain", labels={LINKS: db})
    d = daemon.start(level="info")
    wait_until(block_is(containers.hosts_path(plain), [line(containers.ip(db), db)]))
    said = d.wait_log(lambda e: e.get("container_name") == web
                      and "mounts its own /etc/hosts; not managed" in e["event"],
                      what="the mount reported by name")  # fmt: skip
    assert said["level"] == "warning"
    time.sleep(0.5)
    assert mine.read_bytes() == b"127.0.0.1\tlocalhost\n192.0.2.1\tmine\n"
    assert containers.hosts(web) == mine.read_text()
    assert b"BEGIN hostsyncd" not in containers.hosts_path(web).read_bytes()
    logs = d.logs()
    assert not [e for e in logs if e.get("container_name") == web
                and e["event"] == "hosts file updated"], "a write no container sees"
    assert sum("mounts its own" in e["event"] for e in logs
               if e.get("container_name") == web) == 1, "reported once"  # fmt: skip
    # status and graph show it.
    out = daemon.cli("status", "--config", str(d.config), "--json")
    [view] = [v for v in json.loads(out.stdout)["dependents"] if v["name"] == web]
    assert view["unmanaged"] == "mounts its own /etc/hosts; not managed"
    text = daemon.cli("status", "--config", str(d.config)).stdout
    assert f"{web} (" in text and "mounts its own /etc/hosts; not managed" in text
    graph = daemon.cli("graph", "--config", str(d.config)).stdout
    assert f"{web} (running): mounts its own /etc/hosts; not managed" in graph


def test_a_host_network_dependent_gets_its_links(containers, daemon, wait_until):
    """A `--network host` container reads a copy of the host's hosts file that the engine
    keeps for it; a target's address on a bridge is reachable from the host's namespace."""
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data"}, network="host")
    daemon.start()
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), "data", db)]))
    assert line(containers.ip(db), "data", db) in containers.hosts(web)
    # It follows the target like any other dependent.
    containers.stop(db)
    wait_until(block_is(containers.hosts_path(web), []), what="the line gone with db")
    containers.start(db)
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), "data", db)]),
               what="the line back on db's new start")  # fmt: skip


def test_sidecars_links_land_in_the_file_they_read_one_block_for_all(
    containers, daemon, wait_until
):
    """`--network container:app` (compose `network_mode: service:app`) reads app's hosts
    file; Docker writes none of its own. That file holds one block: the union of the links
    of every container that reads it, each line once; a sidecar of a sidecar included."""
    db = containers.run("db")
    cache = containers.run("cache")
    app = containers.run("app", labels={LINKS: db})
    side = containers.run("side", labels={LINKS: f"{cache} {db}"}, network="container:app")
    side2 = containers.run("side2", labels={LINKS: f"{db}:data"}, network=f"container:{side}")
    d = daemon.start()
    path = containers.hosts_path(app)

    def want() -> list[str]:
        return [line(containers.ip(db), db), line(containers.ip(cache), cache),
                line(containers.ip(db), "data", db)]

    wait_until(block_is(path, want()), what="one block with every sharer's links")
    text = path.read_text()
    assert text.count(line(containers.ip(db), db)) == 1, "each line once"
    for reader in (app, side, side2):
        assert containers.hosts(reader) == text, f"{reader} reads app's file"
    # The lines follow a target like any other.
    containers.stop(cache)
    containers.run("squat")  # may take cache's old address
    containers.start(cache)
    wait_until(block_is(path, want()), what="the cache line following its restart")
    # status and graph say who shares which file.
    out = daemon.cli("status", "--config", str(d.config), "--json")
    views = {v["name"]: v for v in json.loads(out.stdout)["dependents"]}
    assert views[side]["hosts_file"] == {"of": app, "shared_with": sorted([app, side2])}
    assert views[app]["hosts_file"] == {"of": app, "shared_with": sorted([side, side2])}
    graph = daemon.cli("graph", "--config", str(d.config)).stdout
    assert f"{side2} (running), reads {app}'s hosts file with " in graph
    # The sidecar goes: its lines go, app's and side2's stay.
    containers.rm(side2)
    wait_until(block_is(path, [line(containers.ip(db), db), line(containers.ip(cache), cache)]),
               what="side2's line gone, the others kept")  # fmt: skip
    containers.rm(side)
    wait_until(block_is(path, [line(containers.ip(db), db)]), what="only app's own line left")
    assert not [e for e in d.logs() if e.get("level") == "error"]
