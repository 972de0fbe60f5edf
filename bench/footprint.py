"""Footprint: the daemon's peak RSS with 100 containers and 100 links, and its CPU over 60
idle seconds with systemd's watchdog on.

50 targets and 50 dependents, each dependent linking to two targets (100 links). The daemon
gets a NOTIFY_SOCKET (a datagram socket bound here) and WATCHDOG_USEC=2000000, so it pings
every second; resync_interval stays at its default (60 s), so the idle minute holds about
one periodic resync. Peak RSS is VmHWM from /proc/<pid>/status at the end; CPU is
utime + stime from /proc/<pid>/stat, all threads. Docker's --link costs no process of its
own: for scale, the bench engine's dockerd CPU over the same idle minute is reported too.
"""

from __future__ import annotations

import time
from pathlib import Path

from lib import Bench, NotifySocket, hostsyncd, proc_cpu, proc_status, wait_for

TARGET_RSS_MB = 60.0
TARGET_IDLE_CPU_S = 0.1
LABEL = "hostsyncd.links"


def measure(bench: Bench, workdir: Path, idle: float = 60.0, size: int = 100,
            no_watchdog: float = 20.0) -> dict[str, object]:
    half = size // 2
    targets = bench.run_many([{"name": f"fp-t{i}"} for i in range(half)])
    deps = bench.run_many([
        {"name": f"fp-d{i}", "labels": {LABEL: f"{bench.name(f'fp-t{i}')}:a,"
                                                f"{bench.name(f'fp-t{(i + 1) % half}')}:b"}}
        for i in range(half)
    ])
    workdir.mkdir(parents=True, exist_ok=True)
    notify = NotifySocket(workdir / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    dockerd = bench.engine.pid()
    try:
        with hostsyncd(bench, workdir / "watchdog", env=env) as proc:
            wait_for(lambda: notify.count("READY=1"), 10)
            wait_for(lambda: all(b"# BEGIN hostsyncd" in bench.hosts_path(d).read_bytes()
                                 for d in deps), 30)
            time.sleep(2)  # let the start settle: state file, first pings
            engine0 = proc_cpu(dockerd) if dockerd else None
            window = _idle(proc.pid, workdir / "watchdog" / "state.json", idle)
            engine1 = proc_cpu(dockerd) if dockerd else None
            status = proc_status(proc.pid)
            pings = notify.count("WATCHDOG=1", window["t0"], window["t1"])
        # The same without the watchdog: what the pings themselves cost.
        plain: dict[str, float] = {}
        if no_watchdog > 0:
            with hostsyncd(bench, workdir / "plain") as proc:
                time.sleep(2)
                plain = _idle(proc.pid, workdir / "plain" / "state.json", no_watchdog)
    finally:
        notify.close()
        bench.remove([*deps, *targets])
    span = window["t1"] - window["t0"]
    out: dict[str, object] = {
        "containers": size, "links": 2 * half, "idle_s": round(span, 2),
        "vm_hwm_mb": status["VmHWM"] / 1024, "vm_rss_mb": status["VmRSS"] / 1024,
        "idle_cpu_s": round(window["cpu"], 3),
        # The target is for 60 s: a shorter (--quick) run is scaled up to compare.
        "idle_cpu_s_per_60s": round(window["cpu"] * 60 / span, 3),
        "watchdog_pings": pings,
        "state_file_writes": window["state_writes"],
        "dockerd_idle_cpu_s": None if engine0 is None else round(engine1 - engine0, 3),
        "clock_tick_s": 0.01,
    }
    if plain:
        out["no_watchdog"] = {
            "idle_s": round(plain["t1"] - plain["t0"], 2),
            "idle_cpu_s_per_60s": round(plain["cpu"] * 60 / (plain["t1"] - plain["t0"]), 3),
            "state_file_writes": plain["state_writes"],
        }
    return out


def _idle(pid: int, state_file: Path, seconds: float) -> dict[str, float]:
    """CPU seconds the process used over an idle window, and how often it replaced its
    state file meanwhile (watched by inode: it is replaced by rename)."""
    t0, cpu0 = time.monotonic(), proc_cpu(pid)
    writes, last = 0, _inode(state_file)
    while time.monotonic() < t0 + seconds:
        time.sleep(0.05)
        now = _inode(state_file)
        writes += now != last
        last = now
    t1, cpu1 = time.monotonic(), proc_cpu(pid)
    return {"t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "state_writes": writes}


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return 0


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    bench = Bench()
    try:
        print(json.dumps(measure(bench, Path(tempfile.mkdtemp()),
                                 *((10.0, 100, 5.0) if "--quick" in sys.argv else ())),
                         indent=1))
    finally:
        bench.cleanup()
