"""Health-gated links: from the engine's `health_status: healthy` event until the line is in
the dependent's hosts file (and from `health_status: unhealthy` until it is gone).

One target with a healthcheck (`test -f /ok` every 250 ms, one failure is unhealthy), one
dependent labelled `hostsyncd.health=wait`. Each cycle removes /ok, waits for the line to
go, creates /ok, waits for it to come back. The event's time is the engine's own
(`timeNano`); the file is polled on this machine's same clock, so the figure covers the
event's delivery, the daemon's pass and its write. There is no `--link` counterpart: Docker
writes a link's line whatever the target's health.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from lib import Bench, alias_ip, run_alone, summary

INTERVAL_NS = 250_000_000


class _Events:
    """The target's health events, (action, timeNano), read on a thread of their own. The
    daemon reads the same events on its own stream and may well write the file before this
    thread has the event: `wait` waits for it (no polling)."""

    def __init__(self, bench: Bench, cid: str) -> None:
        self.seen: list[tuple[str, int]] = []
        self._changed = threading.Condition()
        self._api = bench.client()
        self._stream = self._api.events(decode=True, filters={"container": [cid],
                                                              "event": ["health_status"]})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for event in self._stream:
            with self._changed:
                self.seen.append((str(event.get("Action", "")), int(event.get("timeNano") or 0)))
                self._changed.notify_all()

    def wait(self, action: str, after: int, until: int, timeout: float = 5.0) -> int | None:
        """The last `action` event with after <= timeNano <= until, once it has arrived."""
        def found() -> list[int]:
            return [t for a, t in self.seen if a == action and after <= t <= until]

        with self._changed:
            times = self._changed.wait_for(found, timeout)
        return times[-1] if times else None

    def close(self) -> None:
        self._stream.close()
        self._api.close()


def _until(path: Path, present: bool, timeout: float = 10.0) -> int:
    """Poll the file until the "db" line is there (or gone); its wall time in ns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (alias_ip(path.read_bytes(), "db") is not None) is present:
            return time.time_ns()
        time.sleep(0.0002)
    raise RuntimeError(f"the line was never {'written' if present else 'removed'}")


def _exec(bench: Bench, cid: str, *cmd: str) -> None:
    run = bench.api.exec_create(cid, list(cmd))
    bench.api.exec_start(run["Id"])


def measure(bench: Bench, cycles: int = 20) -> dict[str, object]:
    db = bench.run("db", healthcheck={"Test": ["CMD-SHELL", "test -f /ok"],
                                      "Interval": INTERVAL_NS, "Retries": 1})
    dep = bench.run("dep", labels={"hostsyncd.links": f"{bench.name('db')}:db",
                                   "hostsyncd.health": "wait"})
    path = bench.hosts_path(dep)
    events = _Events(bench, db)
    up: list[float] = []
    down: list[float] = []
    try:
        for _ in range(cycles):
            before = time.time_ns()
            _exec(bench, db, "rm", "-f", "/ok")
            gone = _until(path, present=False)
            # The first cycle starts with no line (the target is starting): nothing
            # answered an unhealthy event then.
            unhealthy = events.wait("health_status: unhealthy", before, gone,
                                    timeout=0 if not up else 5.0)
            if unhealthy is not None:
                down.append((gone - unhealthy) / 1e6)
            before = time.time_ns()
            _exec(bench, db, "touch", "/ok")
            seen = _until(path, present=True)
            healthy = events.wait("health_status: healthy", before, seen)
            if healthy is None:
                raise RuntimeError("no health_status: healthy event before the line came")
            up.append((seen - healthy) / 1e6)
    finally:
        events.close()
    result: dict[str, object] = {"healthy_to_line": summary(up), "raw_ms": {"up": up,
                                                                             "down": down}}
    if down:
        result["unhealthy_to_gone"] = summary(down)
    return result


if __name__ == "__main__":
    run_alone(measure)
