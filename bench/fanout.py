"""Fan-out: N dependents of each kind (`--link` and the label), each kind on a target of
its own; the time from the target's `docker start` until ALL its dependents' files show its
new IP.

The two targets are restarted alternately (A then B, then B then A, ...) in the same run, so
both kinds see the same machine. They have separate targets because Docker updates a
target's --link parents inside its start, before it writes the target's own hosts entry,
which is where hostsyncd learns the new address first: on a shared target hostsyncd would
be charged for Docker's N --link writes as well as its own. Each N is set up on its own and
removed before the next (the bench bridge is a /24).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

from lib import Bench, alias_ip, hostsyncd, summary, wait_for

SIZES = (10, 30, 100)
TARGET_N = 30
TARGET_RATIO = 1.3
SIDES = ("link", "hostsyncd")


def measure(bench: Bench, workdir: Path, sizes: tuple[int, ...] = SIZES,
            cycles: int = 7) -> dict[str, object]:
    out: dict[str, object] = {"sizes": list(sizes), "cycles": cycles, "by_n": {}}
    for n in sizes:
        out["by_n"][str(n)] = _one_size(bench, workdir / f"n{n}", n, cycles)  # type: ignore[index]
    at = out["by_n"].get(str(TARGET_N))  # type: ignore[attr-defined]
    if at is not None:
        out["ratio_at_target_n"] = at["ratio_median"]
    return out


def _one_size(bench: Bench, workdir: Path, n: int, cycles: int) -> dict[str, object]:
    # The targets first, so they hold the lowest addresses of this setup and each thief
    # takes the address its target gave up.
    targets = {"link": bench.run(f"fo{n}-dbl"), "hostsyncd": bench.run(f"fo{n}-dbh")}
    link_target, label_target = bench.name(f"fo{n}-dbl"), bench.name(f"fo{n}-dbh")
    deps = bench.run_many(
        [{"name": f"fo{n}-link{i}", "links": {link_target: "db"}} for i in range(n)]
        + [{"name": f"fo{n}-label{i}", "labels": {"hostsyncd.links": f"{label_target}:db"}}
           for i in range(n)]
    )
    files = {"link": [bench.hosts_path(cid) for cid in deps[:n]],
             "hostsyncd": [bench.hosts_path(cid) for cid in deps[n:]]}
    thieves = []
    all_ms: dict[str, list[float]] = {side: [] for side in SIDES}
    first_ms: dict[str, list[float]] = {side: [] for side in SIDES}
    each_ms: dict[str, list[float]] = {side: [] for side in SIDES}
    try:
        with hostsyncd(bench, workdir):
            wait_for(lambda: all(alias_ip(p.read_bytes(), "db") for p in files["hostsyncd"]), 30)
            for c in range(cycles):
                for side in SIDES if c % 2 == 0 else SIDES[::-1]:
                    db = targets[side]
                    old_ip = bench.ip(db)
                    bench.api.stop(db, timeout=0)
                    thief = bench.run(f"fo{n}-thief{c}{side[0]}")
                    thieves.append(thief)
                    if bench.ip(thief) != old_ip:
                        raise RuntimeError("the old IP was not reused")
                    time.sleep(0.3)  # both sides done with the stop
                    times = _time_start(bench, db, files[side], old_ip)
                    all_ms[side].append(max(times) * 1000)
                    first_ms[side].append(min(times) * 1000)
                    each_ms[side] += [t * 1000 for t in times]
                    time.sleep(0.3)  # and with the start
    finally:
        bench.remove([*targets.values(), *deps, *thieves])
    result: dict[str, object] = {side: summary(v) for side, v in all_ms.items()}
    result["each"] = {side: summary(v) for side, v in each_ms.items()}
    # The first file updated, and the time each further file took: where "all" goes.
    result["first"] = {side: summary(v) for side, v in first_ms.items()}
    result["per_file_ms"] = {
        side: statistics.median((a - f) / max(1, n - 1) for a, f in
                                zip(all_ms[side], first_ms[side], strict=True))
        for side in SIDES}
    result["ratio_median"] = result["hostsyncd"]["median"] / result["link"]["median"]
    result["raw_ms"] = all_ms
    return result


def _time_start(bench: Bench, cid: str, files: list[Path], old_ip: str) -> list[float]:
    """Start the target; for each file, the seconds until it named a new IP for db."""
    fds = [os.open(path, os.O_RDONLY) for path in files]
    pending = dict(enumerate(fds))
    seen: dict[int, float] = {}
    try:
        starter = threading.Thread(target=bench.api.start, args=(cid,))
        t0 = time.perf_counter()
        starter.start()
        deadline = t0 + 30
        last: dict[int, bytes] = {}
        while pending and time.perf_counter() < deadline:
            for key, fd in list(pending.items()):
                content = os.pread(fd, 1 << 16, 0)
                if content == last.get(key):
                    continue  # parse only what changed: the poller shares the 2 cores
                last[key] = content
                ip = alias_ip(content, "db")
                if ip is not None and ip != old_ip:
                    seen[key] = time.perf_counter() - t0
                    del pending[key]
            time.sleep(0.0002)
        starter.join()
    finally:
        for fd in fds:
            os.close(fd)
    if pending:
        raise RuntimeError(f"new IP never reached {len(pending)} of {len(files)} files")
    return list(seen.values())


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    bench = Bench()
    try:
        quick = "--quick" in sys.argv
        out = measure(bench, Path(tempfile.mkdtemp()), (10, 30) if quick else SIZES,
                      2 if quick else 7)
        for data in out["by_n"].values():
            data.pop("raw_ms")
        print(json.dumps(out, indent=1))
    finally:
        bench.cleanup()
