"""The private engine is stopped and started 5 times under a running daemon, and the
containers change around each outage.

Named to run last in this directory: it stops the shared private engine (and with it every
container in it). Each outage is kept short and the engine is always started again.

Per cycle: the engine stops (containers without a restart policy stay stopped when it
comes back), the daemon must stay up and say "engine unreachable since ..." in its STATUS=;
as soon as the engine answers again a target is removed and recreated on a new address,
another (no restart policy) is started again or left stopped, and a dependent without a
restart policy is started again. Every running dependent must then converge within 5 s of
the engine answering again.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from integration.util import LINKS, line, split

pytestmark = pytest.mark.engine

CYCLES = 5
CONVERGE_LIMIT = 5.0


def _wall(entry: dict) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def test_daemon_rides_out_engine_restarts_and_converges_within_5s(
    engine, containers, networks, daemon, notify, results, wait_until
):
    net = networks.create("n")
    always = ("--restart", "always")
    db = containers.run("db", *always, "--ip", net.addr(10), network=net.name)
    cache = containers.run("cache", "--ip", net.addr(11), network=net.name)
    mover = containers.run("mover", "--ip", net.addr(20), network=net.name)
    specs = {
        "web1": f"{db} {cache} {mover}:mv",
        "web2": f"{db}:data {mover}",
        "web3": f"{cache}",
    }
    deps = {n: containers.run(n, *always, labels={LINKS: s}, network=net.name)
            for n, s in specs.items()}  # fmt: skip
    deps["manual"] = containers.run("manual", labels={LINKS: f"{db} {mover}:mv"},
                                    network=net.name)  # fmt: skip
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, level="info")
    mover_ip = net.addr(20)

    def expected(cache_up: bool) -> dict[str, list[str]]:
        c = [line(net.addr(11), cache)] if cache_up else []
        mv = line(mover_ip, "mv", mover)
        return {
            deps["web1"]: [line(net.addr(10), db), *c, mv],
            deps["web2"]: [line(net.addr(10), "data", db), line(mover_ip, mover)],
            deps["web3"]: c,
            deps["manual"]: [line(net.addr(10), db), mv],
        }

    def converged(want: dict[str, list[str]]) -> bool:
        for dep, lines in want.items():
            _, block, begins, ends = split(containers.hosts_path(dep).read_text())
            if block != lines or (begins, ends) != ((1, 1) if lines else (0, 0)):
                return False
        return True

    wait_until(lambda: converged(expected(True)), what="the first sync")
    cycles = []
    try:
        for i in range(CYCLES):
            notify.drain()
            notify.messages.clear()
            stopping = time.monotonic()
            engine.stop()
            stopped = time.monotonic()
            # The daemon stays up and says that the engine is away.
            deadline = time.monotonic() + 5
            status = []
            while not status and time.monotonic() < deadline:
                assert d.alive(), f"daemon exited during the outage:\n{d.stderr_text()}"
                notify.collect(0.1)
                status = [s for s in notify.sent("STATUS=") if "engine unreachable since" in s]
            assert d.alive()
            engine.start()
            back, back_wall = time.monotonic(), time.time()
            # Changes made the moment the engine is back, before the daemon reconnects.
            cache_up = i % 2 == 0
            mover_ip = net.addr(21 + i)
            containers.rm(mover)
            containers.run("mover", "--ip", mover_ip, network=net.name)
            if cache_up:
                containers.start(cache)
            containers.start(deps["manual"])
            changed = time.monotonic()
            want = expected(cache_up)
            wait_until(lambda want=want: converged(want), timeout=20, interval=0.01,
                       what=f"every dependent converged after engine restart {i + 1}",
                       show=lambda want=want: {k: containers.hosts_path(k).read_text()
                                               for k in want})  # fmt: skip
            done = time.monotonic()
            reconnected = [_wall(e) - back_wall for e in d.logs()
                           if e["event"] == "engine connected" and _wall(e) > back_wall - 1]
            cycles.append({
                "engine_stop_s": round(stopped - stopping, 3),
                "status_said_unreachable": bool(status),
                "status": status[:1],
                "changes_done_after_back_s": round(changed - back, 3),
                "daemon_reconnected_after_back_s": round(min(reconnected), 3)
                if reconnected else None,
                "converged_after_back_s": round(done - back, 3),
            })  # fmt: skip
            notify.collect(0.2)
            assert any("engine connected" in s for s in notify.sent("STATUS="))
    finally:
        engine.ensure_running()
        times = [c["converged_after_back_s"] for c in cycles]
        results.update(
            fault="engine stopped and started under the daemon",
            tried=CYCLES, survived=len(cycles) if d.alive() else 0, data_lost=0,
            cycles=cycles, converged_after_back_max_s=max(times, default=None),
        )  # fmt: skip
    assert d.alive()
    assert all(c["status_said_unreachable"] for c in cycles), cycles
    slow = [t for t in times if t > CONVERGE_LIMIT]
    assert not slow, f"converged more than {CONVERGE_LIMIT}s after the engine was back: {cycles}"
