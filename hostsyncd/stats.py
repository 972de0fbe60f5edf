"""What the daemon counts about its own work: writes, write errors, passes, propagation.

Plain data, kept by the reconciler as it works and read by `metrics.py` (the only module
that knows Prometheus) and the state file. Every label a count is kept under is a member
of one of the enums below, never a name, id or anything else a container chooses: however
many containers come and go, and whatever they are called, this stays the same size.

Imports: nothing.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class WriteKind(StrEnum):
    """Why a hosts file was written."""

    UPDATE = "update"  # its block changed: engine facts or remote records moved
    REPAIR = "repair"  # its block was right, but someone else had changed the file
    FASTPATH = "fastpath"  # the start fast path, from the watcher's thread


class WriteFailure(StrEnum):
    """Why a hosts file could not be read or written (writer.HostsFileError.kind)."""

    NO_SPACE = "no_space"  # ENOSPC, EDQUOT
    REFUSED = "refused"  # a symlink, a non-plain file, a bad id: not ours to write
    TOO_LARGE = "too_large"  # over sync.max_hosts_bytes
    IO = "io"  # any other error from the file system


class PassKind(StrEnum):
    FULL = "full"  # a resync: one list call, every file verified
    EVENTS = "events"  # after engine events or remote records changed


# Seconds: from a millisecond (a pass over a few dependents, the fast path) to ten seconds
# (an engine so loaded that `docker start` alone takes one).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)


@dataclass(slots=True)
class Histogram:
    """Observations counted into fixed buckets: a constant size, whatever is observed."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, then one for +Inf
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "<=").
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, the last bound being +Inf."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.sum)


@dataclass(slots=True)
class Stats:
    writes: Counter[WriteKind] = field(default_factory=Counter)
    write_errors: Counter[WriteFailure] = field(default_factory=Counter)
    passes: Counter[PassKind] = field(default_factory=Counter)
    pass_seconds: Histogram = field(default_factory=Histogram)
    # From the engine event being read to a file written because of it (see
    # Reconciler.reconcile: the oldest event of the batch, so an upper bound).
    propagation_seconds: Histogram = field(default_factory=Histogram)
    events: int = 0  # engine events received

    def copy(self) -> Stats:
        """A copy another thread may read while this one goes on counting."""
        return Stats(Counter(self.writes), Counter(self.write_errors), Counter(self.passes),
                     self.pass_seconds.copy(), self.propagation_seconds.copy(), self.events)
