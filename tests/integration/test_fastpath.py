"""The fast paths and coalescing: entries in place before a restarted dependent's
entrypoint reads them, an IP change written without waiting for the list, and a burst of
events costing one write per distinct final content."""

from __future__ import annotations

import signal

import pytest

from .util import LINKS, block_is, line

pytestmark = pytest.mark.engine

COPY_FIRST = ("sh", "-c", "cat /etc/hosts > /first-read; exec sleep 3600")


def _writes(d, container: str) -> int:
    return sum(1 for e in d.logs()
               if e["event"] == "hosts file updated" and e.get("container_name") == container)


def test_restarted_dependent_finds_its_link_at_its_first_read(containers, daemon, wait_until):
    """The dependent's own connect event comes before its entrypoint runs: reacting to it
    puts the block back into the file Docker has just rebuilt, before the first read."""
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data"}, cmd=COPY_FIRST)
    daemon.start()
    expected = line(containers.ip(db), "data", db)
    wait_until(block_is(containers.hosts_path(web), [expected]))
    hits = 0
    for _ in range(5):
        containers.restart(web)
        first = wait_until(lambda: _first_read(containers, web), what="the entrypoint's copy")
        hits += expected in first.splitlines()
    # The benchmark measures the rate over many restarts (bench/first_read.py); here one
    # miss in five is allowed for a loaded CI machine, never more.
    assert hits >= 4, f"link present at first read in {hits} of 5 restarts"


def _first_read(containers, name: str) -> str | None:
    out = containers.docker("exec", name, "cat", "/first-read", check=False)
    return out.stdout.decode() if out.returncode == 0 else None


def test_a_target_restart_is_written_before_its_start_event(
        containers, daemon, wait_until):
    """The new address is written from the network connect (or Docker's own rebuild of the
    target's hosts file), not from the list call after the start event."""
    # Docker 28 sends the start event right behind the connect, and the engine edge
    # resolves the connect's endpoint first, so both can reach the loop in one batch: the
    # connect's address is written before the list call the start asks for.
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: db})
    d = daemon.start(level="debug")
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(containers.ip(db), db)]))
    containers.stop(db)
    wait_until(block_is(path, []))
    containers.run("thief")  # takes db's old address
    containers.start(db)
    new_line = line(containers.ip(db), db)
    wait_until(block_is(path, [new_line]))
    db_id = containers.id(db)

    def order() -> tuple[int, int] | None:
        entries = d.logs()
        written = next((i for i, e in enumerate(entries) if e["event"] == "hosts file updated"
                        and e.get("added") == [new_line]), None)
        started = next((i for i, e in enumerate(entries) if e["event"] == "engine event"
                        and e.get("action") == "start" and e.get("container_id") == db_id
                        and written is not None and i > 0), None)
        # The list call that db's start asks for: the address must not wait for it.
        listed = next((i for i, e in enumerate(entries) if started is not None
                       and i > started and e["event"] == "containers listed"), None)
        return (written, listed) if written is not None and listed is not None else None

    written, listed = wait_until(order, what="the write and the list after db's start")
    assert written < listed, "the new line was written only after the list that db's " \
        "start asked for"


def test_a_burst_of_events_costs_one_write_per_distinct_final_content(
    containers, networks, daemon, wait_until
):
    """While the daemon is frozen, its target moves three times. Thawed, it drains the
    queued events in one pass and writes the final content, not every step on the way."""
    net = networks.create("n")
    db = containers.run("db", "--ip", net.addr(10), network=net.name)
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    d = daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(net.addr(10), db)]))
    before = _writes(d, web)

    d.proc.send_signal(signal.SIGSTOP)
    try:
        for n in (11, 12, 13):
            containers.stop(db)
            containers.docker("network", "disconnect", net.name, db)
            containers.docker("network", "connect", "--ip", net.addr(n), net.name, db)
            containers.start(db)
    finally:
        d.proc.send_signal(signal.SIGCONT)
    wait_until(block_is(path, [line(net.addr(13), db)]))
    # Three moves of the target would be six writes one event at a time (drop, add).
    writes = _writes(d, web) - before
    assert 1 <= writes <= 2, f"{writes} writes for one burst"
