"""Prometheus metrics, written as a node_exporter textfile (`[metrics] textfile`).

The daemon has no network (its unit says PrivateNetwork=yes, and that is right), so it
serves nothing: node_exporter's textfile collector reads the file instead. Nothing here
counts anything. The reconciler keeps its counts in `stats.Stats` as it works, and the
daemon's loop hands a copy of them, with what it knows now (`Readings`), to a thread of
this module every `metrics.interval` seconds and once more at a clean stop. That thread
renders them through prometheus_client (a registry of its own, never the global one) and
writes the file: a slow or full disk holds up that thread only, never the loop.

Every label value is one of a fixed set (the enums of stats.py, `LinkState`,
`PROBLEM_KINDS`): never a container's name, id or anything else a container chooses, so
the file and the memory behind it stay the same size whatever containers do.

Imports: core, stats; prometheus_client.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hostsyncd.core.graph import DependentPlan
from hostsyncd.core.reconcile import ROUTINE
from hostsyncd.stats import Histogram, PassKind, Stats, WriteFailure, WriteKind

# After a failed write, the next try waits this long, doubling up to the maximum: a full
# disk is not hammered, and a later write still lands once there is room.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 120.0
# What a problem's subject says it is about (problems.ProblemLog.counts), for the
# `kind` label. Anything else is counted as "other", so a new subject can't grow the set.
PROBLEM_KINDS = frozenset({
    "links",  # invalid specs; links that resolve to nothing for a reason that is no routine
    "file",  # a hosts file that can't be written, is oversized or holds binary junk
    "fight",  # a container that keeps rewriting its file
    "forged",  # a forged own entry in a stopped target's file
    "publish",  # a container that can't be published to the cluster
    "conflict",  # sidecars giving one alias different addresses
    "engine",  # an engine call that failed
    "daemon",  # the state file can't be written
    "cluster",  # other nodes' records refused
    "metrics",  # this textfile can't be written
})
OTHER = "other"


class LinkState(StrEnum):
    RESOLVED = "resolved"  # it gives lines
    WAITING = "waiting"  # routine: its target stopped, went, is being recreated (ROUTINE)
    UNRESOLVED = "unresolved"  # any other reason it gives no line
    INVALID = "invalid"  # the spec itself is invalid


def link_states(plans: Iterable[DependentPlan]) -> Counter[LinkState]:
    out: Counter[LinkState] = Counter({state: 0 for state in LinkState})
    for plan in plans:
        out[LinkState.INVALID] += len(plan.errors)
        for link in plan.links:
            if link.problem is None:
                out[LinkState.RESOLVED] += 1
            elif link.problem in ROUTINE:
                out[LinkState.WAITING] += 1
            else:
                out[LinkState.UNRESOLVED] += 1
    return out


def problem_kinds(counts: Mapping[str, int]) -> dict[str, int]:
    """Problem counts by kind, every kind of PROBLEM_KINDS present, the rest as "other"."""
    out = dict.fromkeys(sorted(PROBLEM_KINDS), 0) | {OTHER: 0}
    for kind, n in counts.items():
        out[kind if kind in PROBLEM_KINDS else OTHER] += n
    return out


@dataclass(frozen=True, slots=True)
class Readings:
    """What the loop knew at one moment: a copy, so the writer's thread reads it safely."""

    stats: Stats
    dependents: int
    links: Mapping[LinkState, int]
    problems: Mapping[str, int]  # by kind, as problems.ProblemLog.counts gives them
    engine_up: bool
    cluster_up: bool | None  # None: the cluster is off
    started: float  # the daemon's start, wall time


def _labelled(family: CounterMetricFamily | GaugeMetricFamily,
              values: Iterable[tuple[str, float]]) -> CounterMetricFamily | GaugeMetricFamily:
    for label, value in values:
        family.add_metric([label], value)
    return family


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), n) for bound, n in hist.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


def families(r: Readings) -> Iterator[Metric]:
    """The metrics, from one set of readings."""
    s = r.stats
    yield _labelled(CounterMetricFamily(
        "hostsyncd_writes", "Hosts files written, by why: update (the block changed), "
        "repair (put back after another writer), fastpath (the start fast path).",
        labels=["kind"]), ((k.value, s.writes[k]) for k in WriteKind))
    yield _labelled(CounterMetricFamily(
        "hostsyncd_write_errors", "Hosts file reads or writes that failed, by why.",
        labels=["kind"]), ((k.value, s.write_errors[k]) for k in WriteFailure))
    yield _labelled(CounterMetricFamily(
        "hostsyncd_passes", "Reconcile passes: full (a resync) or events.",
        labels=["kind"]), ((k.value, s.passes[k]) for k in PassKind))
    yield _histogram("hostsyncd_pass_duration_seconds",
                     "Time one reconcile pass took, its writes included.", s.pass_seconds)
    yield _histogram("hostsyncd_propagation_seconds",
                     "From an engine event being read to a hosts file written because of "
                     "it (from the oldest event of the pass's batch).",
                     s.propagation_seconds)
    yield CounterMetricFamily("hostsyncd_engine_events", "Engine events received.",
                              value=s.events)
    yield GaugeMetricFamily("hostsyncd_dependents", "Containers that declare links.",
                            value=r.dependents)
    yield _labelled(GaugeMetricFamily(
        "hostsyncd_links", "Declared links by state: resolved, waiting (its target stopped "
        "or went), unresolved (any other reason), invalid (a bad spec).",
        labels=["state"]), ((state.value, r.links.get(state, 0)) for state in LinkState))
    yield _labelled(GaugeMetricFamily(
        "hostsyncd_problems", "Problems (warnings and errors) open now, by kind.",
        labels=["kind"]), problem_kinds(r.problems).items())
    yield GaugeMetricFamily("hostsyncd_engine_up", "1 if the engine's event stream is "
                            "connected.", value=int(r.engine_up))
    if r.cluster_up is not None:
        yield GaugeMetricFamily("hostsyncd_cluster_up", "1 if etcd answers (cluster on).",
                                value=int(r.cluster_up))
    yield GaugeMetricFamily("hostsyncd_start_time_seconds",
                            "When the daemon started, in seconds since the epoch.",
                            value=r.started)


class _ReadingsCollector(Collector):
    def __init__(self) -> None:
        self.readings: Readings | None = None

    def collect(self) -> Iterable[Metric]:
        return families(self.readings) if self.readings is not None else ()

    def describe(self) -> Iterable[Metric]:
        return ()  # the names depend on the readings (cluster_up); nothing to check


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Replace `path` atomically with the registry's metrics, mode 0644.

    node_exporter runs as a user of its own, and the daemon's umask (the unit's is 0077)
    would leave the file readable by root alone. write_to_textfile has no mode, so it
    writes a staging file beside the target (itself through a temporary file and a
    rename), which gets its mode and is then renamed into place: a reader sees the old
    file or the new one, whole, and always readable. The staging name does not end in
    .prom, so node_exporter never reads it.
    """
    staging = path.with_name(f".{path.name}.staging")
    write_to_textfile(str(staging), registry)
    os.chmod(staging, 0o644)
    os.replace(staging, path)


class TextfileWriter:
    """The textfile, written on a thread of its own from the latest readings handed over."""

    def __init__(self, path: Path,
                 write: Callable[[Path, CollectorRegistry], None] = write_textfile) -> None:
        self.path = path
        self._write = write
        self.registry = CollectorRegistry()
        self._collector = _ReadingsCollector()
        self.registry.register(self._collector)
        self._cond = threading.Condition()
        self._pending: Readings | None = None
        self._stopping = False
        self._backoff = 0.0
        # The last write's error (None once one succeeds), for the loop to report once.
        self.failure: str | None = None
        self.written = 0  # successful writes, for tests
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, readings: Readings) -> None:
        """Hand over the latest readings; never waits for a write. Readings not yet written
        are replaced: only the latest counts."""
        with self._cond:
            self._pending = readings
            self._cond.notify()

    def stop(self, final: Readings, timeout: float) -> None:
        """Write `final` (at once, backoff or not) and end the thread, waiting at most
        `timeout` seconds: a hung disk must not hold up the daemon's stop."""
        with self._cond:
            self._pending = final
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                readings, self._pending = self._pending, None
                stopping = self._stopping
            if readings is not None and not self.write(readings) and not stopping:
                with self._cond:
                    # No write before the backoff is over, however often readings come;
                    # the failed readings are tried again unless newer ones came.
                    if self._pending is None:
                        self._pending = readings
                    self._cond.wait_for(lambda: self._stopping, timeout=self._backoff)
                continue
            if stopping:
                return

    def write(self, readings: Readings) -> bool:
        """One write, on the calling thread. False if it failed (see `failure`)."""
        self._collector.readings = readings
        try:
            self._write(self.path, self.registry)
        except Exception as exc:  # noqa: BLE001 - the thread must live on: it is retried
            # An OSError is the disk's (full, a missing directory); anything else would be
            # a bug here, said the same way rather than ending the metrics for good.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                f"{type(exc).__name__}: {exc}"
            self.failure = f"cannot write metrics.textfile {self.path}: {reason}; retrying"
            self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
            return False
        self.failure = None
        self._backoff = 0.0
        self.written += 1
        return True
