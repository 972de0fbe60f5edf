"""The engine goes away and comes back; the daemon rides it out.

Named to run last: it stops the shared private engine (and so every container in it).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .util import LINKS, block_is, line

pytestmark = pytest.mark.engine


def test_daemon_survives_an_engine_restart_and_converges(engine, containers, daemon, wait_until):
    # db and web come back by themselves with the engine (restart policy), before any
    # client can have re-subscribed to events: the daemon only learns of them by resyncing
    # when it reconnects. db2 is started by hand afterwards: that one it may see as events.
    db = containers.run("db", "--restart", "always")
    web = containers.run(
        "web", "--restart", "always", labels={LINKS: f"{db} {containers.name('db2')}"}
    )
    db2 = containers.run("db2")
    d = daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(containers.ip(db), db), line(containers.ip(db2), db2)]))

    try:
        engine.stop()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert d.alive(), f"daemon exited while the engine was down:\n{d.stderr_text()}"
            time.sleep(0.1)
    finally:
        engine.start()
    assert d.alive()

    wait_until(lambda: containers.state(web) == "running" and containers.state(db) == "running")
    # Without live-restore, db2 (no restart policy) stayed stopped.
    wait_until(
        block_is(path, [line(containers.ip(db), db)]),
        timeout=20,
        what="web's block re-applied after the engine restart (db only; db2 is stopped)",
    )
    containers.start(db2)
    expected = [line(containers.ip(db), db), line(containers.ip(db2), db2)]
    wait_until(block_is(path, expected), what="db2's line back once started again")
    assert sorted(ln for ln in containers.hosts(web).splitlines() if "\t" in ln and db in ln) == (
        sorted(expected)
    )
    assert d.alive()
    assert d.stop() == 0


def test_daemon_frozen_through_an_engine_restart_converges(engine, containers, daemon, wait_until):
    """Events are lost for sure: the daemon is frozen (SIGSTOP) while the engine restarts
    and brings its containers back. Once thawed it reads what was buffered (the deaths),
    finds the stream gone, reconnects and resyncs: the list it gets then is the truth."""
    db = containers.run("db", "--restart", "always")
    web = containers.run("web", "--restart", "always", labels={LINKS: db})
    d = daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(containers.ip(db), db)]))

    os.kill(d.pid, signal.SIGSTOP)
    try:
        engine.stop()
        engine.start()
        wait_until(lambda: containers.state(web) == "running" and containers.state(db) == "running")
    finally:
        os.kill(d.pid, signal.SIGCONT)
        engine.ensure_running()
    wait_until(
        block_is(path, [line(containers.ip(db), db)]),
        timeout=20,
        what="web's block re-applied after the daemon missed the engine restart",
    )
    assert d.alive()
