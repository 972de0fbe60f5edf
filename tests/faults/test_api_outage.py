"""The engine's API is unreachable for longer than an engine restart takes, while its
containers keep running and change.

A proxy in front of the engine socket is taken down (socket removed, connections cut) for
2 s and then for 6.5 s; that leaves the daemon's reconnect backoff (capped at 5 s) near its
cap. Meanwhile a target is recreated on a new address and another stops or starts. Once
the proxy is back, every dependent must converge within 5 s (plus a 0.5 s margin for this
machine), and STATUS= must have said the engine was unreachable.
"""

from __future__ import annotations

import time

import pytest
from integration.util import LINKS, block_is, line

from .lib import SocketProxy

pytestmark = pytest.mark.engine

OUTAGES = (2.0, 6.5)
LIMIT = 5.0
MARGIN = 0.5


def test_api_unreachable_for_seconds_then_converges_within_5s(
    engine, containers, networks, daemon, notify, results, wait_until, tmp_path
):
    proxy = SocketProxy(tmp_path / "api.sock", str(engine.socket_path))
    proxy.up()
    net = networks.create("n")
    db = containers.run("db", "--ip", net.addr(10), network=net.name)
    mv = containers.run("mv", "--ip", net.addr(20), network=net.name)
    web = containers.run("web", labels={LINKS: f"{db} {mv}:moved"}, network=net.name)
    path = containers.hosts_path(web)
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, url=proxy.url, level="info")
    wait_until(block_is(path, [line(net.addr(10), db), line(net.addr(20), "moved", mv)]))
    rounds = []
    try:
        for i, outage in enumerate(OUTAGES):
            notify.drain()
            notify.messages.clear()
            proxy.down()
            down = time.monotonic()
            time.sleep(0.3)
            containers.rm(mv)
            containers.run("mv", "--ip", net.addr(21 + i), network=net.name)
            db_up = i % 2 == 1
            (containers.start if db_up else containers.stop)(db)
            time.sleep(max(0.0, outage - (time.monotonic() - down)))
            notify.collect(0.05)
            said = [s for s in notify.sent("STATUS=") if "engine unreachable since" in s]
            assert d.alive()
            proxy.up()
            back = time.monotonic()
            want = [line(net.addr(10), db)] if db_up else []
            want.append(line(net.addr(21 + i), "moved", mv))
            wait_until(block_is(path, want), timeout=15, interval=0.01,
                       what=f"convergence after an API outage of {outage}s")  # fmt: skip
            took = round(time.monotonic() - back, 3)
            rounds.append({"outage_s": outage, "status_said_unreachable": bool(said),
                           "converged_after_back_s": took})  # fmt: skip
    finally:
        proxy.down()
        times = [r["converged_after_back_s"] for r in rounds]
        results.update(
            fault="engine API unreachable for seconds (proxy down), containers changing",
            tried=len(OUTAGES), survived=len(rounds) if d.alive() else 0, data_lost=0,
            rounds=rounds, converged_after_back_max_s=max(times, default=None),
        )  # fmt: skip
    assert all(r["status_said_unreachable"] for r in rounds), rounds
    assert max(times) <= LIMIT + MARGIN, rounds
