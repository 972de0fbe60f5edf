"""Event storm: 50 targets restarted at once (one thread each), with dependents that link to
every one of them; D dependents with the label and D with `--link`, in the same storm.

Per dependent:
- writes: IN_CLOSE_WRITE events on its hosts file (one per write, for Docker and for
  hostsyncd alike); for hostsyncd also its "hosts file updated" log entries, which must agree;
- distinct contents: how many different blocks the file went through, counting each
  content a write produced once (the content before the storm does not count). For
  hostsyncd this is exact, rebuilt from the log's added/removed lines; a poller, which can
  miss short-lived contents, gives a lower bound for both kinds;
- the target: hostsyncd's writes <= distinct contents + 1, i.e. at most one write that did
  not give the file a content it had not had yet;
- convergence: from the moment the restarts are let go until the file names every target's
  final address (the poller's last change), the slowest dependent of each kind.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from lib import Bench, CloseWriteCounter, hostsyncd, log_events, summary, wait_for

LABEL = "hostsyncd.links"


def measure(bench: Bench, workdir: Path, targets: int = 50, dependents: int = 10,
            storms: int = 3) -> dict[str, object]:
    aliases = {f"t{i}": bench.name(f"es-t{i}") for i in range(targets)}
    tids = bench.run_many([{"name": f"es-t{i}"} for i in range(targets)])
    label = ",".join(f"{name}:{alias}" for alias, name in aliases.items())
    link_deps = bench.run_many([{"name": f"es-link{i}", "links": {n: a for a, n in aliases.items()}}
                                for i in range(dependents)])
    label_deps = bench.run_many([{"name": f"es-label{i}", "labels": {LABEL: label}}
                                 for i in range(dependents)])
    files = {("link", cid): bench.hosts_path(cid) for cid in link_deps}
    files |= {("hostsyncd", cid): bench.hosts_path(cid) for cid in label_deps}
    log = workdir / "hostsyncd.log"
    runs = []
    try:
        with hostsyncd(bench, workdir, log={"level": "debug", "output": "json"}):
            expected = _addresses(bench, tids, aliases)
            wait_for(lambda: all(_mapping(p.read_bytes(), aliases) == expected
                                 for p in files.values()), 60, 0.1)
            for _ in range(storms):
                runs.append(_storm(bench, tids, aliases, files, log))
                time.sleep(1)
    finally:
        bench.remove([*label_deps, *link_deps, *tids])
    return _aggregate(runs, targets, dependents)


def _storm(bench: Bench, tids: list[str], aliases: dict[str, str],
           files: dict[tuple[str, str], Path], log: Path) -> dict[str, object]:
    before = {key: path.read_bytes() for key, path in files.items()}
    offset = log.stat().st_size
    counter = CloseWriteCounter({key[1]: path for key, path in files.items()})
    poller = _Poller(files, aliases)
    clients = [bench.client() for _ in tids]
    gate = threading.Barrier(len(tids) + 1)
    errors: list[BaseException] = []

    def restart(api: object, cid: str) -> None:
        gate.wait()
        try:
            api.restart(cid, timeout=0)  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=restart, args=(api, cid))
               for api, cid in zip(clients, tids, strict=True)]
    for t in threads:
        t.start()
    poller.start()
    gate.wait()
    t0 = time.perf_counter()
    poller.t0 = t0
    for t in threads:
        t.join()
    restarts_s = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"restart failed: {errors[0]}")
    expected = _addresses(bench, tids, aliases)
    try:
        wait_for(lambda: all(poller.current.get(key) == expected for key in files), 60, 0.05)
    finally:
        time.sleep(2)  # trailing writes count too
        poller.stop()
        counter.close()
        counts = counter.counts
        for api in clients:
            api.close()  # type: ignore[attr-defined]
    writes_log: dict[str, list[dict[str, object]]] = {}
    for event in log_events(log, offset):
        if event.get("event") == "hosts file updated":
            writes_log.setdefault(str(event["container_id"]), []).append(event)
    per: dict[str, list[dict[str, object]]] = {"link": [], "hostsyncd": []}
    for (side, cid), _path in files.items():
        changes = poller.changes[(side, cid)]
        entry: dict[str, object] = {
            "writes": counts[cid],
            "distinct_polled": len({content for _, content in changes}),
            "converged_ms": (changes[-1][0] - t0) * 1000 if changes else 0.0,
        }
        if side == "hostsyncd":
            entries = writes_log.get(cid, [])
            entry["writes_logged"] = len(entries)
            entry["distinct"] = _distinct_from_log(before[(side, cid)], entries)
        per[side].append(entry)
    return {"restarts_s": restarts_s, "per_dependent": per,
            "inotify_overflows": counter.overflows}


def _distinct_from_log(before: bytes, entries: list[dict[str, object]]) -> int:
    """Distinct block contents the writes produced, replayed from added/removed."""
    from hostsyncd.core.hostsblock import block_lines

    state = frozenset(line.decode() for line in block_lines(before))
    seen = set()
    for entry in entries:
        state = (state - set(entry["removed"])) | set(entry["added"])  # type: ignore[arg-type]
        seen.add(state)
    return len(seen)


def _aggregate(runs: list[dict[str, object]], targets: int, dependents: int) -> dict[str, object]:
    sides: dict[str, dict[str, list[float]]] = {"link": {}, "hostsyncd": {}}
    violations = 0
    log_mismatch = 0
    for run in runs:
        for side, entries in run["per_dependent"].items():  # type: ignore[attr-defined]
            agg = sides[side]
            for entry in entries:
                for key, value in entry.items():
                    agg.setdefault(key, []).append(value)
                if side == "hostsyncd":
                    violations += entry["writes"] > entry["distinct"] + 1
                    log_mismatch += entry["writes"] != entry["writes_logged"]
            slowest = max(e["converged_ms"] for e in entries)
            agg.setdefault("slowest_converged_ms", []).append(slowest)
    out: dict[str, object] = {
        "targets": targets, "dependents_per_kind": dependents, "storms": len(runs),
        "restarts_s": [r["restarts_s"] for r in runs],
        "inotify_overflows": sum(r["inotify_overflows"] for r in runs),  # type: ignore[misc]
    }
    for side, agg in sides.items():
        out[side] = {key: summary(values) for key, values in agg.items()}
        out[side]["mean_writes"] = sum(agg["writes"]) / len(agg["writes"])  # type: ignore[index]
    out["hostsyncd"]["mean_distinct"] = (  # type: ignore[index]
        sum(sides["hostsyncd"]["distinct"]) / len(sides["hostsyncd"]["distinct"]))
    out["over_bound"] = violations  # dependent-storms with writes > distinct + 1
    out["log_vs_inotify_mismatch"] = log_mismatch
    out["converge_ratio"] = (out["hostsyncd"]["slowest_converged_ms"]["median"]  # type: ignore[index]
                             / out["link"]["slowest_converged_ms"]["median"])  # type: ignore[index]
    return out


def _addresses(bench: Bench, tids: list[str], aliases: dict[str, str]) -> dict[str, str]:
    return {alias: bench.ip(cid) for alias, cid in zip(aliases, tids, strict=True)}


def _mapping(content: bytes, aliases: dict[str, str]) -> dict[str, str]:
    """alias -> the IPv4 address the file gives it (first line naming it), as resolvers do."""
    out: dict[str, str] = {}
    for line in content.splitlines():
        fields = line.split()
        if len(fields) < 2 or b":" in fields[0]:
            continue
        for name in fields[1:]:
            alias = name.decode(errors="replace")
            if alias in aliases and alias not in out:
                out[alias] = fields[0].decode()
    return out


class _Poller(threading.Thread):
    """Reads every file in a loop; keeps each file's sequence of distinct mappings."""

    def __init__(self, files: dict[tuple[str, str], Path], aliases: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.files = files
        self.aliases = aliases
        self.t0 = 0.0
        self.current: dict[tuple[str, str], dict[str, str]] = {}
        self.changes: dict[tuple[str, str], list[tuple[float, tuple[tuple[str, str], ...]]]] = {
            key: [] for key in files}
        self._stopping = threading.Event()

    def run(self) -> None:
        fds = {key: os.open(path, os.O_RDONLY) for key, path in self.files.items()}
        raw: dict[tuple[str, str], bytes] = {}
        last: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        try:
            while not self._stopping.is_set():
                for key, fd in fds.items():
                    content = os.pread(fd, 1 << 20, 0)
                    if not content or raw.get(key) == content:
                        continue  # empty: Docker's truncate-then-write, caught midway
                    raw[key] = content
                    mapping = _mapping(content, self.aliases)
                    frozen = tuple(sorted(mapping.items()))
                    if key in last and frozen != last[key] and self.t0:
                        self.changes[key].append((time.perf_counter(), frozen))
                    last[key] = frozen
                    self.current[key] = mapping
                time.sleep(0.0005)
        finally:
            for fd in fds.values():
                os.close(fd)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    bench = Bench()
    try:
        quick = "--quick" in sys.argv
        print(json.dumps(measure(bench, Path(tempfile.mkdtemp()), 50, 4 if quick else 10,
                                 1 if quick else 3), indent=1))
    finally:
        bench.cleanup()
