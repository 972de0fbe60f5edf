"""The engine's API stays away for longer than the resync interval: the daemon waits.

With `resync_interval = 2`, a proxy in front of the engine socket is taken down for 10 s.
A resync that comes due while the engine is away must not turn the loop into a spin: over
8 s of the outage the daemon uses at most 0.2 s of CPU (measured from /proc). Meanwhile a
target is recreated on a new address and another stops; once the proxy is back, every
dependent converges within the 5 s backoff cap (plus 0.5 s for this machine), and STATUS=
said the engine was unreachable.
"""

from __future__ import annotations

import time

import pytest
from integration.util import LINKS, block_is, line

from .lib import SocketProxy, cpu_seconds

pytestmark = pytest.mark.engine

RESYNC = 2.0
OUTAGE = 10.0
MEASURED = 8.0
MAX_CPU_S = 0.2
CONVERGE_S = 5.0
MARGIN_S = 0.5


def test_outage_longer_than_the_resync_interval(
    engine, containers, networks, daemon, notify, results, wait_until, tmp_path
):
    proxy = SocketProxy(tmp_path / "api.sock", str(engine.socket_path))
    proxy.up()
    net = networks.create("n")
    db = containers.run("db", "--ip", net.addr(10), network=net.name)
    mv = containers.run("mv", "--ip", net.addr(20), network=net.name)
    web = containers.run("web", labels={LINKS: f"{db} {mv}:moved"}, network=net.name)
    path = containers.hosts_path(web)
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, url=proxy.url, level="info",
                     resync_interval=RESYNC)  # fmt: skip
    wait_until(block_is(path, [line(net.addr(10), db), line(net.addr(20), "moved", mv)]))
    time.sleep(0.5)
    notify.drain()
    notify.messages.clear()
    try:
        proxy.down()
        down = time.monotonic()
        containers.rm(mv)
        containers.run("mv", "--ip", net.addr(21), network=net.name)
        containers.stop(db)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - down)))
        c0, w0 = cpu_seconds(d.pid), time.monotonic()
        time.sleep(MEASURED)
        cpu = cpu_seconds(d.pid) - c0
        measured = time.monotonic() - w0
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
        notify.collect(0.05)
        said = [s for s in notify.sent("STATUS=") if "engine unreachable since" in s]
        alive_in_outage = d.alive()
        proxy.up()
        back = time.monotonic()
        wait_until(block_is(path, [line(net.addr(21), "moved", mv)]), timeout=20,
                   interval=0.01, what="convergence after the outage")  # fmt: skip
        took = time.monotonic() - back
    finally:
        proxy.down()
    results.update(
        fault=f"engine API unreachable for {OUTAGE:g} s, resync_interval {RESYNC:g} s",
        tried=1, survived=int(d.alive() and alive_in_outage), data_lost=0,
        outage_s=OUTAGE, cpu_s=round(cpu, 3), cpu_measured_over_s=round(measured, 2),
        cpu_share=round(cpu / measured, 4), converged_after_back_s=round(took, 3),
        status_said_unreachable=bool(said),
    )  # fmt: skip
    assert alive_in_outage and d.alive()
    assert cpu <= MAX_CPU_S, f"{cpu:.2f} s of CPU over {measured:.1f} s of outage"
    assert said, notify.sent("STATUS=")
    assert took <= CONVERGE_S + MARGIN_S, took
