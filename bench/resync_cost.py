"""Resync cost.

Real: N = 50, 100, 200 containers on the bench engine, half of them dependents each linking
to two of the other half (so N links). A daemon with `resync_interval = 1` and the debug
log resyncs every second; each full resync logs its wall time, CPU time and the engine API
calls it made, which must be exactly one: the list call, no inspect per container. The
containers are added in steps (50, +50, +100) and the daemon restarted at each N. Docker's
--link has no resync: it writes at start and never checks, so there is no --link column.

Synthetic: the pure core fed generated snapshots of up to 10,000 containers and 50,000 links
(half targets, half dependents with ten links each): Snapshot(...) + plan_all + render and
merge of every dependent's file, as the daemon's pass does, timed in CPU time (process_time)
and taking the best of several passes. The cost per container must stay flat (linear
total) and under 20 µs.
"""

from __future__ import annotations

import gc
import math
import random
import time
from pathlib import Path
from types import MappingProxyType

from lib import Bench, hostsyncd, linear_fit, log_events, summary, wait_for

from hostsyncd.core.graph import Snapshot, parsed_label, plan_all
from hostsyncd.core.hostsblock import block_lines, merge, render_block
from hostsyncd.core.model import Container, Endpoint

LABEL = "hostsyncd.links"
REAL_SIZES = (50, 100, 200)
SYNTH_SIZES = (1000, 2000, 5000, 10000)
LINKS_PER_DEPENDENT = 10
TARGET_US = 20.0
# The scale model is single-threaded and CPU-bound: its own CPU time is what it costs, and
# unlike wall time it does not count the time other processes on this shared machine take.
_clock = time.process_time


# -- real -----------------------------------------------------------------------------------


def measure_real(bench: Bench, workdir: Path, sizes: tuple[int, ...] = REAL_SIZES,
                 resyncs: int = 5) -> dict[str, object]:
    others = bench.others()
    out: dict[str, object] = {"sizes": list(sizes), "foreign_containers": len(others),
                              "by_n": {}}
    have = 0
    try:
        for n in sizes:
            half = n // 2
            # targets first, then dependents each linking to two targets
            new_targets = [{"name": f"rc-t{i}"} for i in range(have // 2, half)]
            bench.run_many(new_targets)
            bench.run_many([
                {"name": f"rc-d{i}",
                 "labels": {LABEL: f"{bench.name(f'rc-t{i}')}:a,"
                                   f"{bench.name(f'rc-t{(i + 1) % half}')}:b"}}
                for i in range(have // 2, half)
            ])
            have = n
            out["by_n"][str(n)] = _resyncs(bench, workdir / f"n{n}", n, resyncs)  # type: ignore[index]
    finally:
        bench.remove([c for c in bench.created])
    return out


def _resyncs(bench: Bench, workdir: Path, n: int, count: int) -> dict[str, object]:
    log = workdir / "hostsyncd.log"
    with hostsyncd(bench, workdir, sync={"resync_interval": 1},
                   log={"level": "debug", "output": "json"}):
        wait_for(lambda: len(_full(log)) >= count + 1, count * 3 + 30, 0.2)
    entries = _full(log)
    first, steady = entries[0], entries[1:count + 1]
    return {
        "containers": [e["containers"] for e in steady],
        "dependents": [e["dependents"] for e in steady],
        "first": {k: first[k] for k in ("wall_ms", "cpu_ms", "api_calls", "written")},
        "wall_ms": summary([e["wall_ms"] for e in steady]),
        "cpu_ms": summary([e["cpu_ms"] for e in steady]),
        "api_calls": sorted({e["api_calls"] for e in steady}),
        "written": sum(e["written"] for e in steady),
        "one_list_call": all(e["api_calls"] == 1 for e in steady),
    }


def _full(log: Path) -> list[dict[str, object]]:
    return [e for e in log_events(log) if e.get("event") == "full resync"]


# -- synthetic ------------------------------------------------------------------------------

_HOSTS_HEAD = (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
               b"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
               b"ff02::2\tip6-allrouters\n")


def snapshot_containers(n: int, links_per_dependent: int = LINKS_PER_DEPENDENT,
                        seed: int = 1) -> list[Container]:
    """n containers on one bridge: n/2 targets, n/2 dependents each linking to
    links_per_dependent distinct targets (every label distinct, as in a real fleet)."""
    rng = random.Random(seed)
    half = n // 2
    ids = [f"{rng.getrandbits(256):064x}" for _ in range(n)]

    def endpoint(i: int) -> tuple[Endpoint, ...]:
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        return (Endpoint("bridge", "n" * 64, ip),)

    out = [Container(ids[i], f"target-{i}", "running", endpoints=endpoint(i))
           for i in range(half)]
    for j in range(half, n):
        picked = rng.sample(range(half), links_per_dependent)
        label = ",".join(f"target-{t}:svc{k}" for k, t in enumerate(picked))
        out.append(Container(ids[j], f"dep-{j}", "running",
                             labels=MappingProxyType({LABEL: label}), endpoints=endpoint(j)))
    return out


def one_pass(containers: list[Container], files: dict[str, bytes]) -> tuple[int, int]:
    """What the daemon's pass does in the core; (dependents, bytes rendered)."""
    snapshot = Snapshot(containers)
    plans = plan_all(snapshot, LABEL)
    size = 0
    for cid, plan in plans.items():
        before = files[cid]
        after = merge(before, render_block(plan.lines(False, block_lines(before))))
        size += len(after)
    return len(plans), size


def measure_synthetic(sizes: tuple[int, ...] = SYNTH_SIZES, repeats: int = 5,
                      diagnose: bool = True) -> dict[str, object]:
    """`repeats` rounds, each measuring every size once (in a rotating order), so that a
    burst of load from elsewhere on the machine does not fall on one size only."""
    out: dict[str, object] = {"sizes": list(sizes), "links_per_dependent": LINKS_PER_DEPENDENT,
                              "rounds": repeats, "by_n": {}}
    # Warm up the interpreter and the allocator, so the first size is not charged for it.
    warm = snapshot_containers(500, seed=2)
    for _ in range(3):
        one_pass(warm, _with_blocks(warm, {c.id: _HOSTS_HEAD for c in warm}))
    del warm
    rounds: dict[int, list[dict[str, object]]] = {n: [] for n in sizes}
    for r in range(repeats):
        for n in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
            rounds[n].append(_steady(n))
    for n in sizes:
        runs = rounds[n]
        best = [float(run["best"]) for run in runs]  # type: ignore[arg-type]
        cold = [float(run["cold"]) for run in runs]  # type: ignore[arg-type]
        dependents = int(runs[0]["dependents"])  # type: ignore[call-overload]
        out["by_n"][str(n)] = {  # type: ignore[index]
            "containers": n, "dependents": dependents,
            "links": dependents * LINKS_PER_DEPENDENT,
            "first_pass_ms": summary([c * 1000 for c in cold]),
            "pass_ms": summary([b * 1000 for b in best]),
            "us_per_container_first": min(cold) / n * 1e6,
            "us_per_container": min(best) / n * 1e6,
            "label_cache": runs[-1]["label_cache"],
        }
    if diagnose and len(sizes) > 1:
        out["diagnosis"] = _diagnose((sizes[0], sizes[-1]), repeats)
    by_n = out["by_n"]
    xs = [float(n) for n in sizes]
    out["fit_ms"] = linear_fit(xs, [by_n[str(n)]["pass_ms"]["min"] for n in sizes])  # type: ignore[index]
    per = [by_n[str(n)]["us_per_container"] for n in sizes]  # type: ignore[index]
    out["max_us_per_container"] = max(per)
    # Linear: the cost of one more container does not grow with the fleet.
    out["growth"] = per[-1] / per[0]
    out["linear"] = out["growth"] <= 1.5 and out["fit_ms"]["r2"] >= 0.98  # type: ignore[index]
    return out


def _steady(n: int, gc_mode: str = "on") -> dict[str, object]:
    """One size: a first pass with an empty label cache, a pass to settle, then the best of
    a few more (about 0.3 s of them). The fleet is built afresh and dropped after, so the
    heap is that of a daemon with n containers. gc_mode "frozen" moves the fleet out of
    the collector's reach first (gc.freeze()), "off" disables the collector for the passes."""
    containers = snapshot_containers(n)
    # Each dependent's file as the daemon finds it: Docker's part plus its own entry.
    files = {c.id: _HOSTS_HEAD + f"10.9.9.9\t{c.id[:12]}\n".encode() for c in containers}
    parsed_label.cache_clear()
    gc.collect()
    t = _clock()
    dependents, _ = one_pass(containers, files)
    cold = _clock() - t
    files = _with_blocks(containers, files)  # later passes find their blocks in place
    if gc_mode == "frozen":
        gc.collect()
        gc.freeze()
    elif gc_mode == "off":
        gc.disable()
    try:
        one_pass(containers, files)
        times = []
        for _ in range(max(2, min(20, math.ceil(0.3 / max(cold, 1e-3))))):
            t = _clock()
            one_pass(containers, files)
            times.append(_clock() - t)
    finally:
        gc.enable()
        gc.unfreeze()
    return {"best": min(times), "cold": cold, "dependents": dependents,
            "label_cache": parsed_label.cache_info()._asdict()}


def _diagnose(sizes: tuple[int, int], repeats: int) -> dict[str, object]:
    """What bends the line: the smallest and largest size again with the garbage collector
    as is, with the fleet frozen out of its reach (gc.freeze(), which a daemon can do after
    each full resync), and off. Its full collections walk every live object, and the live
    heap grows with the fleet. In this process only; hostsyncd is not changed."""
    out: dict[str, dict[str, float]] = {}
    for mode in ("on", "frozen", "off"):
        out[f"gc_{mode}"] = {}
        for n in sizes:
            best = min(float(_steady(n, mode)["best"])  # type: ignore[arg-type]
                       for _ in range(max(2, repeats - 2)))
            out[f"gc_{mode}"][str(n)] = round(best / n * 1e6, 2)
    return out  # type: ignore[return-value]


def _with_blocks(containers: list[Container], files: dict[str, bytes]) -> dict[str, bytes]:
    """The files after a first pass wrote the blocks: later passes find them in place."""
    plans = plan_all(Snapshot(containers), LABEL)
    return {cid: merge(content, render_block(plans[cid].lines())) if cid in plans else content
            for cid, content in files.items()}


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    quick = "--quick" in sys.argv
    print(json.dumps(measure_synthetic((1000, 2000) if quick else SYNTH_SIZES), indent=1))
    if "--synthetic" not in sys.argv:
        bench = Bench()
        try:
            print(json.dumps(measure_real(bench, Path(tempfile.mkdtemp()),
                                          (50,) if quick else REAL_SIZES), indent=1))
        finally:
            bench.cleanup()
