#!/usr/bin/env python3
"""Churn soak: create/start/remove cycles of dependents and targets against a real daemon,
with its RSS sampled. Everything the daemon keeps per container must go with the container.

    python3 bench/soak.py                  5,000 cycles (about 40 minutes here)
    python3 bench/soak.py --cycles 200     a short run

Passes when RSS after all cycles is within 5 MB of RSS after the first tenth of them, no
churned dependent is left in the state file, and the state file's entries for this run's
dependents (the engine may be shared) are no larger than at that checkpoint, plus 4 KiB.
Writes bench/results/soak-<timestamp>.json. tests/faults/test_churn.py runs the same cycles
(`Churn`, `measure`) 300 times in the fault suite.

`Churn` and `measure` need only a docker-py APIClient, so the fault suite imports this file
as it is; the bench engine and the daemon are set up in main() only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LINKS = "hostsyncd.links"
BEGIN = b"# BEGIN hostsyncd"
RSS_SLACK_KIB = 5 * 1024
STATE_SLACK_BYTES = 4096


def rss_kib(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    raise KeyError("VmRSS")


class Churn:
    """Stable containers (a target `st`, dependents `sd0..2` linking `st` and the churned
    target `ct`) and cycles around them: two cycles in three create, start and remove a
    dependent with a label of its own (a new name, a new label value, a new file); every
    third does the same to the target `ct`, which the stable dependents link to. Each cycle
    waits until the daemon has written the new container's line."""

    def __init__(self, api: Any, prefix: str, image: str, containers_root: Path,
                 labels: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.api = api
        self.prefix = prefix
        self.image = image
        self.root = containers_root
        self.labels = labels or {}
        self.timeout = timeout
        self.stable: list[str] = []
        self.cycles = 0
        self.dependent_cycles = 0
        self.target_cycles = 0
        self.slowest_write_s = 0.0

    def name(self, short: str) -> str:
        return self.prefix + short

    def _run(self, short: str, labels: dict[str, str] | None = None) -> str:
        cid: str = self.api.create_container(
            self.image, ["sleep", "3600"], name=self.name(short),
            labels={**self.labels, **(labels or {})},
            host_config=self.api.create_host_config(),
        )["Id"]
        self.api.start(cid)
        return cid

    def _remove(self, cid: str) -> None:
        self.api.remove_container(cid, force=True, v=True)

    def _ip(self, cid: str) -> str:
        nets = self.api.inspect_container(cid)["NetworkSettings"]["Networks"]
        return str(next(iter(nets.values()))["IPAddress"])

    def _wait_line(self, cid: str, want: bytes) -> None:
        """Until the file of `cid` has `want` in its block."""
        path = self.root / cid / "hosts"
        started = time.monotonic()
        while True:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            at = data.find(BEGIN)
            if at >= 0 and want in data[at:]:
                self.slowest_write_s = max(self.slowest_write_s, time.monotonic() - started)
                return
            if time.monotonic() - started > self.timeout:
                raise TimeoutError(f"{want!r} not in {path} after {self.timeout}s:\n{data!r}")
            time.sleep(0.002)

    def setup(self) -> None:
        self.st = self._run("st")
        self.st_ip = self._ip(self.st)
        links = f"{self.name('st')} {self.name('ct')}"
        self.stable = [self._run(f"sd{i}", {LINKS: links}) for i in range(3)]
        for cid in self.stable:
            self._wait_line(cid, f"{self.st_ip}\t{self.name('st')}".encode())

    def stable_names(self) -> set[str]:
        return {self.name(f"sd{i}") for i in range(3)}

    def cycle(self) -> None:
        i = self.cycles
        if i % 3 == 2:
            cid = self._run("ct")
            want = f"{self._ip(cid)}\t{self.name('ct')}".encode()
            self._wait_line(self.stable[i % len(self.stable)], want)
            self.target_cycles += 1
        else:
            links = f"{self.name('st')}:a{i} {self.name('ct')}"
            cid = self._run(f"cd{i}", {LINKS: links})
            self._wait_line(cid, f"{self.st_ip}\ta{i} {self.name('st')}".encode())
            self.dependent_cycles += 1
        self._remove(cid)
        self.cycles += 1


def measure(churn: Churn, pid: int, state_file: Path, cycles: int, checkpoint: int,
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run `cycles` cycles; at `checkpoint` and at the end, once the daemon has let go of
    every churned dependent (the state file lists only the stable ones), take RSS and the
    state file's size. Returns the figures; `ok` says whether the soak's shape held."""
    samples: list[tuple[int, int]] = []
    marks: dict[str, dict[str, Any]] = {}

    def ours(raw: bytes) -> list[dict[str, Any]]:
        """The state file's entries for this churn's dependents (the engine may be shared
        with other runs, whose dependents the daemon lists too)."""
        return [d for d in json.loads(raw)["dependents"] if d["name"].startswith(churn.prefix)]

    def settle(label: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            names = {d["name"] for d in ours(state_file.read_bytes())}
            if names == churn.stable_names():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"state file still lists {sorted(names)} at {label}")
            time.sleep(0.1)
        time.sleep(1.2)  # the state file is rewritten at most once a second
        raw = state_file.read_bytes()
        entries = ours(raw)
        marks[label] = {"cycle": churn.cycles, "rss_kib": rss_kib(pid),
                        "state_bytes": len(raw), "state_dependents": len(entries),
                        "state_bytes_ours": len(json.dumps(entries))}
        progress(f"{label}: {marks[label]}")

    started = time.monotonic()
    while churn.cycles < cycles:
        churn.cycle()
        if churn.cycles % 10 == 0:
            samples.append((churn.cycles, rss_kib(pid)))
        if churn.cycles == checkpoint:
            settle("checkpoint")
    settle("end")
    took = time.monotonic() - started
    rss_growth = marks["end"]["rss_kib"] - marks["checkpoint"]["rss_kib"]
    state_growth = marks["end"]["state_bytes_ours"] - marks["checkpoint"]["state_bytes_ours"]
    return {
        "cycles": churn.cycles, "checkpoint": checkpoint,
        "dependent_cycles": churn.dependent_cycles, "target_cycles": churn.target_cycles,
        "seconds": round(took, 1), "s_per_cycle": round(took / max(1, churn.cycles), 3),
        "slowest_write_s": round(churn.slowest_write_s, 3),
        "marks": marks, "rss_growth_kib": rss_growth, "state_growth_bytes": state_growth,
        "rss_max_sampled_kib": max((r for _, r in samples), default=0),
        "rss_samples": samples,
        "ok": rss_growth <= RSS_SLACK_KIB and state_growth <= STATE_SLACK_BYTES
        and marks["end"]["state_dependents"] == len(churn.stable),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5000)
    parser.add_argument("--checkpoint", type=int, default=0,
                        help="cycle at which the baseline is taken (default: a tenth)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tempfile

    import lib

    checkpoint = args.checkpoint or max(1, args.cycles // 10)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"hsdsoak-{stamp}-"))
    bench = lib.Bench()
    # Not bench.prefix: bench/run.py removes every b<pid>- container it finds at its start,
    # as an earlier run's leftovers, and would take this soak's containers from under it.
    prefix = f"soak{os.getpid() % 10000}-"
    churn = Churn(bench.api, prefix, lib.IMAGE, bench.engine.containers_root)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": bench.machine(),
            "workdir": str(workdir)}
    try:
        with lib.hostsyncd(bench, workdir) as proc:
            churn.setup()
            figures = measure(churn, proc.pid, workdir / "state.json", args.cycles, checkpoint,
                              progress=lambda s: print(s, flush=True))
    finally:
        ids = [c["Id"] for c in bench.api.containers(all=True)
               if any(n.startswith("/" + prefix) for n in c["Names"])]
        bench.remove(ids)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{stamp}.json"
    path.write_text(json.dumps({**meta, "results": figures}, indent=1, default=str) + "\n")
    m = figures["marks"]
    print(f"{figures['cycles']} cycles in {figures['seconds']} s; RSS "
          f"{m['checkpoint']['rss_kib']} KiB at cycle {checkpoint}, {m['end']['rss_kib']} KiB "
          f"at the end ({figures['rss_growth_kib']:+d} KiB, limit {RSS_SLACK_KIB}); state "
          f"{m['checkpoint']['state_bytes']} -> {m['end']['state_bytes']} bytes, "
          f"{m['end']['state_dependents']} dependents; {'PASS' if figures['ok'] else 'FAIL'}")
    print(f"results: {path}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
