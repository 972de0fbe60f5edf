"""The engine goes away and comes back; the daemon rides it out.

Named to run last: it stops the shared private engine (and so every container in it).
"""

from __future__ import annotations

import time

import pytest

from .util import LINKS, block_is, line

pytestmark = pytest.mark.engine


def test_daemon_survives_an_engine_restart_and_converges(engine, containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: db})
    d = daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(containers.ip(db), db)]))

    try:
        engine.stop()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert d.alive(), f"daemon exited while the engine was down:\n{d.stderr_text()}"
            time.sleep(0.1)
    finally:
        engine.start()
    assert d.alive()

    # Without live-restore the containers stopped with the engine; start them again.
    containers.start(db)
    containers.start(web)
    wait_until(block_is(path, [line(containers.ip(db), db)]), timeout=20)
    assert line(containers.ip(db), db) in containers.hosts(web).splitlines()
    assert d.alive()
    assert d.stop() == 0
