"""Docker and hostsyncd write the same hosts file at the same time.

Docker rewrites the dependent's file (restart: from scratch; network connect: append;
disconnect: delete lines) while hostsyncd rewrites it for a target that keeps flapping.
Neither writer locks. A poller counts the reads in which either side's lines are missing,
and after every Docker operation the file must converge to Docker's lines plus the block.
No read may be malformed, except one that raced a single overwrite (the kernel does not
stop a reader while a write is copied in): those are counted apart, and must stay rare.

What "Docker's lines" are after each operation is taken from a twin: a container on the
same networks that is no dependent, and gets the same operations just before. Its lines,
with its hostname and addresses swapped for the dependent's, are what Docker alone writes.
"""

from __future__ import annotations

import random
import time

import pytest
from integration.util import LINKS, line

from .lib import Loop, Poller, block_of, docker_lines, invalid_lines, well_formed_block

pytestmark = pytest.mark.engine

ROUNDS = 6
OPS = ("connect", "restart", "disconnect", "restart")
CONVERGE_TIMEOUT = 5.0
MAX_TORN_READS = 3


def test_docker_and_hostsyncd_writing_at_once_always_converge(
    containers, networks, daemon, results, wait_until
):
    rng = random.Random()
    n1, n2 = networks.create("n1"), networks.create("n2")
    st = containers.run("st", network=n1.name)
    fl = containers.run("fl", network=n1.name)
    dep = containers.run("dep", labels={LINKS: f"{st} {fl}"}, network=n1.name)
    twin = containers.run("twin", network=n1.name)
    path, twin_path = containers.hosts_path(dep), containers.hosts_path(twin)
    d = daemon.start(level="info")
    st_line = line(containers.ip(st, n1.name), st)
    wait_until(lambda: st_line in block_of(path.read_bytes()), what="the first sync")
    # While the dependent itself restarts it is down, and Docker drops the block as it
    # stops it: a missing block then is counted apart (nobody can read the file).
    restarting = {"now": False}

    def flap() -> None:
        containers.stop(fl)
        time.sleep(rng.uniform(0, 0.1))
        containers.start(fl)
        time.sleep(rng.uniform(0, 0.1))

    def classify(_at: float, data: bytes) -> set[str]:
        flags = set()
        if not data:
            flags.add("empty")
        if b"127.0.0.1\tlocalhost\n" not in data:
            flags.add("docker_lines_missing")
        if st_line.encode() + b"\n" not in data:
            flags.add("block_missing_dep_restarting" if restarting["now"] else "block_missing")
        if not well_formed_block(data) or invalid_lines(data):
            flags.add("malformed")
        return flags

    def docker_expected() -> list[str]:
        """The twin's lines, as Docker would have written them for the dependent."""
        mine, its = containers.inspect(dep), containers.inspect(twin)
        swap = {its["Config"]["Hostname"]: mine["Config"]["Hostname"]}
        nets_mine = mine["NetworkSettings"]["Networks"]
        for net, ep in its["NetworkSettings"]["Networks"].items():
            if ep.get("IPAddress") and net in nets_mine:
                swap[ep["IPAddress"]] = nets_mine[net]["IPAddress"]
        out = []
        for ln in docker_lines(twin_path.read_bytes()):
            ip, _, names = ln.partition("\t")
            out.append(swap.get(ip, ip) + "\t" + " ".join(swap.get(n, n) for n in names.split()))
        return out

    def block_ok(data: bytes) -> bool:
        lines = block_of(data)
        others = [ln for ln in lines if ln != st_line]
        return (lines.count(st_line) == 1 and len(others) <= 1
                and all(ln.endswith(f"\t{fl}") for ln in others))  # fmt: skip

    converge_s: dict[str, list[float]] = {op: [] for op in OPS}
    timeline: list[tuple[float, str]] = []
    order_differs: list[str] = []  # ops after which the lines match only as a set
    lost: list[str] = []
    flapper = Loop(flap, name="flapper").start()
    poller = Poller(path, classify, torn_flag="malformed").start()
    try:
        for _ in range(ROUNDS):
            for op in OPS:
                for name in (twin, dep):  # the twin first: it shows what Docker writes
                    timeline.append((time.monotonic(), f"{op} {name[-4:]}"))
                    restarting["now"] = op == "restart" and name == dep
                    if op == "connect":
                        containers.connect(name, n2.name)
                    elif op == "disconnect":
                        containers.disconnect(name, n2.name)
                    else:
                        containers.restart(name)
                done = time.monotonic()
                timeline.append((done, f"{op} done"))
                want = docker_expected()

                def converged(want=want) -> bool:
                    data = path.read_bytes()
                    return sorted(docker_lines(data)) == sorted(want) and block_ok(data)

                try:
                    wait_until(converged, timeout=CONVERGE_TIMEOUT,
                               what=f"Docker's lines plus the block after {op}",
                               show=path.read_bytes)  # fmt: skip
                except BaseException:
                    lost.append(f"{op}: want Docker lines {want}, file {path.read_bytes()!r}")
                    raise
                restarting["now"] = False
                converge_s[op].append(round(time.monotonic() - done, 3))
                if docker_lines(path.read_bytes()) != want:
                    order_differs.append(op)
                flapper.check()
    finally:
        poller.stop()
        flapper.stop()
        figures = poller.figures()
        results.update(
            fault="Docker and hostsyncd writing the same file at once",
            tried=sum(len(v) for v in converge_s.values()) + len(lost),
            survived=sum(len(v) for v in converge_s.values()),
            data_lost=len(lost), lost=lost, flaps=flapper.steps,
            converge_seconds=converge_s,
            converge_max_s=max((t for v in converge_s.values() for t in v), default=None),
            docker_line_order_differs=order_differs, poll=figures,
            long_windows=[(flag, round(took, 3), [f"{round(at - start, 3)} {what}" for at, what
                                                  in timeline if start - 1 < at < start + took])
                          for flag, start, took in poller.long],
        )  # fmt: skip
    # Quiet now: exactly Docker's lines, then the block with both targets.
    fl_line = line(containers.ip(fl, n1.name), fl)
    want_docker = docker_expected()

    def exact() -> bool:
        data = path.read_bytes()
        return sorted(docker_lines(data)) == sorted(want_docker) and sorted(
            block_of(data)) == sorted([st_line, fl_line])  # fmt: skip

    wait_until(exact, what="the final state", show=path.read_bytes)
    assert d.alive()
    assert figures["flagged_reads"].get("malformed", 0) == 0, figures
    # A read that overlaps the copy of one overwrite into the page cache (well under a
    # microsecond per write) can mix the two; a writer that left the file in any other
    # state for longer would be seen far more often.
    assert figures["flagged_reads"].get("torn", 0) <= MAX_TORN_READS, figures
