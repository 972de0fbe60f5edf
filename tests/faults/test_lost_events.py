"""Lost file events: the periodic resync (and the resync after an inotify overflow) still
converges.

1. Overflow: the daemon is started while /proc/sys/fs/inotify/max_queued_events is
   lowered to 16 (restored as soon as its inotify instance exists), then the watched files
   are flooded with thousands of writes from the host side, first while the daemon runs,
   then while it is frozen (SIGSTOP), which overflows the queue for sure. The daemon must
   log "file events were lost; resyncing" and converge.
2. Silent loss: blocks are changed through mmap, which raises no inotify event at all.
   Only the periodic resync (resync_interval = 2) can notice; it must repair them.
"""

from __future__ import annotations

import mmap
import os
import signal
import time
from pathlib import Path

import pytest
from integration.util import LINKS, line

from .lib import expected_file

pytestmark = pytest.mark.engine

MAX_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")
DEPENDENTS = 10
RESYNC = 2
FORGED = b"# BEGIN hostsyncd\n10.9.9.9\tforged\n# END hostsyncd\n"


def _rewrite(path: Path, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def test_flooded_and_silently_lost_file_events_still_converge(
    containers, daemon, results, wait_until
):
    db = containers.run("db")
    deps = [containers.run(f"dep{i}", labels={LINKS: f"{db}:data"}) for i in range(DEPENDENTS)]
    paths = [containers.hosts_path(dep) for dep in deps]
    docker_part = {p: p.read_bytes() for p in paths}
    want = [line(containers.ip(db), "data", db)]
    expected = {p: expected_file(docker_part[p], want) for p in paths}

    def converged() -> bool:
        return all(p.read_bytes() == expected[p] for p in paths)

    def astray() -> dict[str, bytes]:
        """The files not as expected, by dependent: what a failure shows."""
        return {p.parent.name[:12]: p.read_bytes() for p in paths
                if p.read_bytes() != expected[p]}

    assert MAX_EVENTS.exists(), "inotify sysctl missing"
    old_limit = MAX_EVENTS.read_text()
    MAX_EVENTS.write_text("16\n")
    try:
        d = daemon.start(resync_interval=RESYNC)
        d.wait_log(lambda e: e["event"] == "hostsyncd starting", what="the daemon's start")
    finally:
        MAX_EVENTS.write_text(old_limit)
    assert MAX_EVENTS.read_text() == old_limit
    wait_until(converged, what="every dependent converged")

    def overflowed() -> int:
        return sum(e["event"] == "file events were lost; resyncing" for e in d.logs())

    figures: dict[str, object] = {}
    # 1a. A flood while the daemon runs: thousands of host-side writes, half dropping the
    #     block, half forging one.
    writes = 0
    started = time.monotonic()
    for n in range(3000):
        p = paths[n % DEPENDENTS]
        _rewrite(p, docker_part[p] + (FORGED if n % 3 else b""))
        writes += 1
    flood_s = time.monotonic() - started
    t0 = time.monotonic()
    wait_until(converged, timeout=RESYNC + 3, what="convergence after a flood (running)",
               show=astray)
    figures["running_flood"] = {"writes": writes, "seconds": round(flood_s, 3),
                                "overflows_logged": overflowed(),
                                "converged_after_s": round(time.monotonic() - t0, 3)}  # fmt: skip

    # 1b. The same while the daemon is frozen: its 16-event queue overflows for sure.
    before = overflowed()
    os.kill(d.pid, signal.SIGSTOP)
    try:
        for n in range(2000):
            p = paths[n % DEPENDENTS]
            _rewrite(p, docker_part[p] + (FORGED if n % 2 else b""))
    finally:
        os.kill(d.pid, signal.SIGCONT)
    t0 = time.monotonic()
    wait_until(converged, timeout=RESYNC + 3, what="convergence after an overflow",
               show=astray)
    took = time.monotonic() - t0
    wait_until(lambda: overflowed() > before, timeout=5, what="the overflow logged")
    figures["frozen_flood"] = {"writes": 2000, "overflows_logged": overflowed() - before,
                               "converged_after_s": round(took, 3)}  # fmt: skip

    # 2. Silent loss: mmap writes raise no inotify event. The maps stay open until the end,
    #    so that not even the close of the file says anything.
    ip = containers.ip(db).encode()
    wrong = ip[:-1] + (b"7" if ip[-1:] != b"7" else b"8")
    maps = []
    try:
        t0 = time.monotonic()
        for p in paths[:5]:
            fd = os.open(p, os.O_RDWR)
            try:
                mm = mmap.mmap(fd, 0)
            finally:
                os.close(fd)
            maps.append(mm)
            at = mm.find(ip + b"\tdata")
            assert at >= 0
            mm[at : at + len(wrong)] = wrong
        assert all(wrong + b"\tdata" in p.read_bytes() for p in paths[:5])
        wait_until(converged, timeout=RESYNC + 2, what="repair by the periodic resync",
                   show=astray)
        repaired = time.monotonic() - t0
    finally:
        for mm in maps:
            mm.close()
    figures["mmap_silent"] = {"files": 5, "repaired_after_s": round(repaired, 3)}

    results.update(
        fault="lost inotify events (overflow at max_queued_events=16; mmap writes)",
        tried=3, survived=3 if d.alive() else 0, data_lost=0, figures=figures,
        resync_interval=RESYNC,
    )  # fmt: skip
    assert d.alive()
    # One overflow of the kernel queue is one IN_Q_OVERFLOW event (the daemon's own repair
    # writes may overflow its 16-event queue once more). It should say so once, not once
    # per watched file.
    assert 1 <= figures["frozen_flood"]["overflows_logged"] < DEPENDENTS, (
        f"'file events were lost; resyncing' logged {figures['frozen_flood']['overflows_logged']}"
        f" times for one frozen flood, with {DEPENDENTS} files watched"
    )
