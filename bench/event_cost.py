"""CPU per engine event, and a full pass, in the decider at 1k and 10k containers.

Synthetic, pure core, in CPU time: n containers on one bridge, 20% of them dependents with
5 links each to the others. One event is one target moving to a new address (a restart),
a different target each time. Two columns, in the same run:
- before: what every event cost until the decider became incremental, and what a resync
  costs now: `core.reconcile` planning the whole fleet (plan_all, every file's block);
- incremental: `core.reconcile(..., previous=...)`, which plans only the dependents the
  changed containers touch (core.reconcile.touched) and copies the rest.
The incremental column is measured three ways, through the observed state as the daemon
feeds it: a connect event (its endpoint resolved by the engine edge, no list call); an event
followed by the list call the daemon makes for it, of the event's container alone (the
list's `id` filter); and an event followed by a list of every container (Podman, or a batch
naming more than 32 containers), where the observed state compares each listed container
with the one it had (O(fleet), but no planning). Decoding the list's JSON is the engine's
cost and not counted here.

A third column, `worker`, is the whole daemon-side cost of one such event: the worker
(reconcile.Reconciler) folding a start event, its list call of that container alone (an
engine stub that answers at once), the pass, the write of every dependent file it changes
(in place, through the real writer, in a temporary containers root), and a real inotify
watcher on every managed file, whose thread reads back our own writes. CPU time of the
whole process.
"""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from hostsyncd.core.graph import Snapshot
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.core.observed import ObservedState
from hostsyncd.core.reconcile import reconcile

LABEL = "hostsyncd.links"
SIZES = (1000, 10000)
LINKS = 5
DEPENDENT_SHARE = 0.2
TARGET_EVENT_MS = 1.0  # at 10k containers
TARGET_PASS_US = 20.0  # per container
_clock = time.process_time


def fleet(n: int, seed: int = 1) -> list[Container]:
    rng = random.Random(seed)
    dependents = int(n * DEPENDENT_SHARE)
    targets = n - dependents

    def endpoint(i: int) -> tuple[Endpoint, ...]:
        return (Endpoint("bridge", "n" * 64, f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),)

    out = [Container(f"{rng.getrandbits(256):064x}", f"target-{i}", "running",
                     endpoints=endpoint(i)) for i in range(targets)]
    for j in range(dependents):
        picked = rng.sample(range(targets), LINKS)
        label = ",".join(f"target-{t}:svc{k}" for k, t in enumerate(picked))
        out.append(Container(f"{rng.getrandbits(256):064x}", f"dep-{j}", "running",
                             labels=MappingProxyType({LABEL: label}),
                             endpoints=endpoint(targets + j)))
    return out


def measure(sizes: tuple[int, ...] = SIZES, events: int = 200) -> dict[str, object]:
    out: dict[str, object] = {"sizes": list(sizes), "links_per_dependent": LINKS,
                              "dependent_share": DEPENDENT_SHARE, "by_n": {}}
    for n in sizes:
        out["by_n"][str(n)] = _one_size(n, events)  # type: ignore[index]
    largest = out["by_n"][str(sizes[-1])]  # type: ignore[index]
    out["event_ok"] = max(largest["connect_ms"]["median"],
                          largest["asked_ms"]["median"]) <= TARGET_EVENT_MS
    out["worker_ok"] = largest["worker_ms"]["median"] <= TARGET_EVENT_MS
    out["pass_ok"] = all(d["full_us_per_container"] <= TARGET_PASS_US
                         for d in out["by_n"].values())  # type: ignore[union-attr]
    return out


def _one_size(n: int, events: int) -> dict[str, object]:
    containers = fleet(n)
    by_index = {c.id: i for i, c in enumerate(containers)}
    targets = [c for c in containers if LABEL not in c.labels]
    rng = random.Random(n)
    observed = ObservedState()
    observed.listed(list(containers), 0.0)
    gc.collect()
    t = _clock()
    decided = reconcile(observed.snapshot(), {}, LABEL, changed=observed.take_changes())
    full_first = _clock() - t
    current = dict(decided.blocks)
    before, connect, asked, listed, replanned = [], [], [], [], []

    def move(k: int) -> tuple[Container, Endpoint]:
        moved = rng.choice(targets)
        endpoint = replace(moved.endpoints[0],
                           ipv4=f"172.{(k >> 8) & 255}.{k & 255}.{rng.randrange(1, 250)}")
        containers[by_index[moved.id]] = replace(moved, endpoints=(endpoint,))
        return moved, endpoint

    for k in range(events):
        moved, endpoint = move(k)
        if k % 20 == 0:  # the old way is slow at 10k: a sample of events is enough
            t = _clock()
            reconcile(Snapshot(containers), current, LABEL)
            before.append(_clock() - t)
        # A connect event with its endpoint resolved: no list call.
        t = _clock()
        observed.connected(moved.id, moved.name, endpoint, float(k))
        decided = reconcile(observed.snapshot(), current, LABEL, previous=decided,
                            changed=observed.take_changes())
        connect.append(_clock() - t)
        replanned.append(len(decided.replanned or ()))
        for fid in decided.writes:
            current[fid] = decided.blocks[fid]
        # An event that needs the list call, which asks for its container alone.
        moved, _ = move(k)
        one = [replace(containers[by_index[moved.id]])]  # what the list decodes: new objects
        t = _clock()
        observed.listed(one, k + 0.3, only={moved.id})
        decided = reconcile(observed.snapshot(), current, LABEL, previous=decided,
                            changed=observed.take_changes())
        asked.append(_clock() - t)
        for fid in decided.writes:
            current[fid] = decided.blocks[fid]
        if k % 5 == 0:  # the whole list: the fleet is compared, container by container
            move(k)
            fresh = [replace(c) for c in containers]
            t = _clock()
            observed.listed(fresh, k + 0.6)
            decided = reconcile(observed.snapshot(), current, LABEL, previous=decided,
                                changed=observed.take_changes())
            listed.append(_clock() - t)
            for fid in decided.writes:
                current[fid] = decided.blocks[fid]
    full = min(before)
    worker = _worker(n, events)
    return {
        "worker_ms": _summary(worker),
        "containers": n, "dependents": len(decided.plans),
        "before_ms": _summary(before), "connect_ms": _summary(connect),
        "asked_ms": _summary(asked), "listed_ms": _summary(listed),
        "replanned": {"median": statistics.median(replanned), "max": max(replanned)},
        "full_us_per_container": full / n * 1e6,
        "first_full_us_per_container": full_first / n * 1e6,
        "ratio_connect": _summary(before)["median"] / _summary(connect)["median"],
        "ratio_asked": _summary(before)["median"] / _summary(asked)["median"],
        "ratio_listed": _summary(before)["median"] / _summary(listed)["median"],
    }


class _Engine:
    """The engine's list, answered from memory: the worker's cost alone is measured."""

    podman = False

    def __init__(self, containers: list[Container]) -> None:
        self.by_id = {c.id: c for c in containers}

    def list_containers(self, ids: Collection[str] | None = None) -> list[Container]:
        if ids is None:
            return list(self.by_id.values())
        return [self.by_id[i] for i in ids if i in self.by_id]


def _worker(n: int, events: int) -> list[float]:
    """Per event, the whole worker's CPU: apply_events, refresh, reconcile (with writes)."""
    from hostsyncd.config import Config
    from hostsyncd.engine import EngineEvent
    from hostsyncd.reconcile import Reconciler
    from hostsyncd.watcher import HostsWatcher
    from hostsyncd.writer import HostsWriter

    containers = fleet(n)
    engine = _Engine(containers)
    targets = [c for c in containers if LABEL not in c.labels]
    rng = random.Random(n + 1)
    spent: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hsd-worker-") as tmp:
        root = Path(tmp)
        for c in containers:
            (root / c.id).mkdir()
            (root / c.id / "hosts").write_bytes(b"127.0.0.1\tlocalhost\n")
        config = Config.model_validate({"docker": {"containers_root": str(root)}})
        watcher = HostsWatcher(lambda cid: root / cid / "hosts", lambda _c, _d: None)
        watcher.start()
        try:
            worker = Reconciler(config, engine, HostsWriter(root), _Quiet(),
                                watch=watcher.watch_only)  # type: ignore[arg-type]
            worker.refresh()
            worker.reconcile(verify_all=True)
            gc.collect()
            for k in range(events):
                moved = rng.choice(targets)
                endpoint = replace(moved.endpoints[0],
                                   ipv4=f"172.{(k >> 8) & 255}.{k & 255}.{rng.randrange(1, 250)}")
                engine.by_id[moved.id] = replace(moved, endpoints=(endpoint,))
                t = _clock()
                asked, _ = worker.apply_events([EngineEvent("container", "start", moved.id)])
                worker.refresh(asked)
                worker.reconcile()
                spent.append(_clock() - t)
        finally:
            watcher.stop()
    return spent


class _Quiet:
    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


def _summary(seconds: list[float]) -> dict[str, float]:
    """In milliseconds."""
    ordered = sorted(s * 1000 for s in seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "median": statistics.median(ordered), "p95": p95,
            "min": ordered[0]}


if __name__ == "__main__":
    import json
    print(json.dumps(measure(), indent=1))
