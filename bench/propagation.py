"""Propagation: from a target's `docker start` until each dependent's file has its new IP.

One target on the default bridge, one dependent with `--link`, one with the label, in the
same run. Each cycle moves the target to a new IP: stop it, let another container take the
old IP (it stays, so the engine's lowest-free allocation hands it the old IP next cycle
too), start it. Both files are watched by one poller, so both sides see the same start.
"""

from __future__ import annotations

from lib import Bench, alias_ip, run_alone, summary, time_start, wait_for


def measure(bench: Bench, cycles: int = 20) -> dict[str, object]:
    db = bench.run("db")
    link_dep = bench.run("linked", links={bench.name("db"): "db"})
    label_dep = bench.run("labelled", labels={"hostsyncd.links": f"{bench.name('db')}:db"})
    files = {"link": bench.hosts_path(link_dep), "hostsyncd": bench.hosts_path(label_dep)}
    wait_for(lambda: alias_ip(files["hostsyncd"].read_bytes(), "db"), 10)
    times: dict[str, list[float]] = {"link": [], "hostsyncd": []}
    for _ in range(cycles):
        old_ip = bench.ip(db)
        bench.api.stop(db, timeout=0)
        thief = bench.run(f"thief{len(times['link'])}")
        assert bench.ip(thief) == old_ip, "the old IP was not reused"
        seen = time_start(bench, db, files, old_ip)
        for side, elapsed in seen.items():
            times[side].append(elapsed * 1000)
    result: dict[str, object] = {side: summary(ms) for side, ms in times.items()}
    result["ratio_median"] = result["hostsyncd"]["median"] / result["link"]["median"]
    result["ratio_p95"] = result["hostsyncd"]["p95"] / result["link"]["p95"]
    result["raw_ms"] = times
    return result


if __name__ == "__main__":
    run_alone(measure)
