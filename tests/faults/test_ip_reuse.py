"""IP reuse: the target stops and another container takes its address at once.

In the default mode (`on_target_stop = "remove"`) the dependent must never map the alias
to the other container, not even for a moment: a poller reads the dependent's file as fast
as it can while the target stops and a thief is connected with the freed address. A read
that begins after the thief was asked to take the address and still maps the alias to it
is a bad read.
"""

from __future__ import annotations

import time

import pytest
from integration.util import LINKS, block_is, line

from .lib import Poller, block_of

pytestmark = pytest.mark.engine

MOVES = 12


def test_alias_never_points_at_the_container_that_took_the_address(
    containers, networks, daemon, results, wait_until
):
    net = networks.create("n")
    db = containers.run("db", network=net.name)
    thief = containers.run("thief")
    web = containers.run("web", labels={LINKS: f"{db}:database"}, network=net.name)
    path = containers.hosts_path(web)
    daemon.start()
    wait_until(block_is(path, [line(containers.ip(db, net.name), "database", db)]))

    state = {"taken": "", "since": float("inf"), "stopped": "", "stopped_at": float("inf")}

    def classify(at: float, data: bytes) -> set[str]:
        flags = set()
        ips = {ln.split("\t")[0] for ln in block_of(data) if "\tdatabase " in ln}
        if state["taken"] in ips and at >= state["since"]:
            flags.add("alias_to_thief")
        if state["stopped"] in ips and at >= state["stopped_at"]:
            flags.add("stale_after_stop")
        return flags

    poller = Poller(path, classify).start()
    per_move: list[int] = []
    removal_ms: list[float] = []
    restore_ms: list[float] = []
    try:
        for _ in range(MOVES):
            old = containers.ip(db, net.name)
            t0 = time.monotonic()
            containers.stop(db)
            state["stopped"], state["stopped_at"] = old, time.monotonic()
            state["taken"], state["since"] = old, time.monotonic()
            containers.docker("network", "connect", "--ip", old, net.name, thief)
            gone = wait_until(lambda: not block_of(path.read_bytes()) and time.monotonic(),
                              what="the stopped target's line removed")  # fmt: skip
            removal_ms.append(round((gone - t0) * 1000, 1))
            t1 = time.monotonic()
            containers.start(db)
            new = containers.ip(db, net.name)
            assert new != old
            wait_until(block_is(path, [line(new, "database", db)]))  # raises if it never is
            restore_ms.append(round((time.monotonic() - t1) * 1000, 1))
            state["stopped"] = state["taken"] = ""
            per_move.append(poller.counts.get("alias_to_thief", 0) - sum(per_move))
            containers.docker("network", "disconnect", net.name, thief)
    finally:
        poller.stop()
    figures = poller.figures()
    bad = figures["flagged_reads"].get("alias_to_thief", 0)
    results.update(
        fault="IP reuse: target stops, another container takes its address",
        tried=MOVES,
        survived=MOVES if bad == 0 else MOVES - figures["windows"].get("alias_to_thief", 0),
        data_lost=0,
        bad_reads=bad,
        bad_reads_per_move=per_move,
        figures=figures,
        # Measured by polling from before `docker stop` was called; the stop itself takes
        # about 110 ms.
        removal_after_stop_call_ms=removal_ms,
        restored_after_start_call_ms=restore_ms,
    )
    assert poller.reads > 1000 * MOVES, "the poller read too rarely to tell"
    assert bad == 0, f"the alias mapped to the thief's address: {figures}"
