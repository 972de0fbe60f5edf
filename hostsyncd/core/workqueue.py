"""The daemon's one work queue: hosts files (keyed by their owner's id), each with the time
it is next looked at, and a rate-limited requeue per file and reason.

Modelled on controller-runtime's work queue and its per-item exponential rate limiter: a
file that keeps failing for one reason waits twice as long each time, up to that reason's
ceiling, and success forgets the count. The reasons are the ways a write can come back:

- RACE: someone (Docker rebuilding the file) was writing it at the same moment; look again
  in a moment, without backoff, since Docker's rebuild is over within milliseconds. The
  count says how long we have been patient.
- FAILED: the write failed (disk full, I/O error): `sync.retry_interval`, doubling up to
  FAILED_MAX; nothing waits by spinning while the disk stays full.
- FIGHT: the container keeps rewriting its own file: up to FIGHT_BURST repairs within
  FIGHT_WINDOW seconds are free; beyond that its block is put back at most every 0.5 s,
  doubling up to 10 s, until it is found as it was left.

A file that was written by someone else (a *drift*) is queued as one: its repair is a
repair, not an update, and it counts towards a fight. Pure: times are given, never read.

Imports: nothing.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

# A drift without a close (the NOTES saw one Docker rewrite with no close event) is looked
# at after this many seconds of quiet.
QUIET = 0.1
FAILED_MAX = 60.0
FIGHT_BURST = 30
FIGHT_WINDOW = 10.0


class Retry(Enum):
    """Why a file is looked at again, with its first delay and its ceiling (seconds; a
    first delay of 0 means the caller gives it)."""

    RACE = (0.02, 0.02)
    FAILED = (0.0, FAILED_MAX)
    FIGHT = (0.5, 10.0)

    @property
    def first(self) -> float:
        return self.value[0]

    @property
    def ceiling(self) -> float:
        return self.value[1]


@dataclass(slots=True)
class _Key:
    due: float | None = None  # None: not queued
    drift: bool = False  # queued only because someone else wrote the file
    attempts: dict[Retry, int] = field(default_factory=dict)
    repairs: deque[float] | None = None  # made at the first repair


class WorkQueue:
    """Keys with due times, on a heap (stale heap entries are skipped, and the heap is
    rebuilt when they outnumber the keys). Not thread-safe: the daemon's loop owns it."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._heap: list[tuple[float, str]] = []
        self._fighting: set[str] = set()  # the keys with Retry.FIGHT in their attempts

    def add(self, key: str, at: float) -> None:
        """Look at `key` at `at`, or sooner if it is already due sooner. An event's work:
        it outranks a drift."""
        entry = self._keys.setdefault(key, _Key())
        entry.drift = False
        self._set_due(key, entry, at if entry.due is None else min(entry.due, at))

    def drift(self, key: str, now: float, closed: bool) -> None:
        """Someone else wrote `key`: look once the writer is done (it closed the file, or
        went QUIET). A fighting key keeps the time its backoff gave it; a key queued for an
        event stays queued for it."""
        if self.fighting(key):
            return
        entry = self._keys.setdefault(key, _Key())
        at = now if closed else now + QUIET
        if entry.due is None:
            entry.drift = True
            self._set_due(key, entry, at)
        elif entry.drift:
            self._set_due(key, entry, at if closed else max(entry.due, at))

    def retry(self, key: str, now: float, reason: Retry, first: float = 0.0,
              drift: bool = False) -> float:
        """Look at `key` again after the reason's backoff, which grows with each retry for
        the same reason until `done` (`first`: the first delay, for a reason without one).
        `drift`: the work was a repair, and its retry is still one. Returns the delay."""
        entry = self._keys.setdefault(key, _Key())
        count = entry.attempts.get(reason, 0)
        entry.attempts[reason] = count + 1
        # The exponent stops growing long before the ceiling could matter: a file that
        # fails for days must not overflow a float (2.0 ** 1024 does).
        delay = min((first or reason.first) * 2.0 ** min(count, 40),
                    max(reason.ceiling, first))
        at = now + delay
        # Queued meanwhile for an event: that stays; a drift and a drift stay a drift.
        entry.drift = drift if entry.due is None else entry.drift and drift
        if entry.due is None or at < entry.due:
            self._set_due(key, entry, at)
        return delay

    def done(self, key: str, reason: Retry) -> None:
        """The reason's trouble is over for `key`: a next retry starts from the first delay."""
        entry = self._keys.get(key)
        if entry is not None:
            entry.attempts.pop(reason, None)
        if reason is Retry.FIGHT:
            self._fighting.discard(key)

    def attempts(self, key: str, reason: Retry) -> int:
        entry = self._keys.get(key)
        return entry.attempts.get(reason, 0) if entry is not None else 0

    def repaired(self, key: str, now: float) -> bool:
        """A drift of `key` was repaired. True when that makes it a fight: FIGHT_BURST
        repairs within FIGHT_WINDOW seconds. From then on it is retried for Retry.FIGHT,
        and `calm` ends that."""
        entry = self._keys.setdefault(key, _Key())
        if Retry.FIGHT in entry.attempts:
            return False
        if entry.repairs is None:
            entry.repairs = deque(maxlen=FIGHT_BURST)
        entry.repairs.append(now)
        if len(entry.repairs) == FIGHT_BURST and now - entry.repairs[0] <= FIGHT_WINDOW:
            entry.repairs = None
            entry.attempts[Retry.FIGHT] = 0
            self._fighting.add(key)
            return True
        return False

    def fighting(self, key: str) -> bool:
        return key in self._fighting

    def fighters(self) -> frozenset[str]:
        return frozenset(self._fighting)

    def queued(self, key: str) -> bool:
        entry = self._keys.get(key)
        return entry is not None and entry.due is not None

    def due(self, now: float) -> list[str]:
        """The keys due by `now`, earliest first (still queued: `take` each). Costs the
        due keys times log(queue), not a walk of every key: the heap is read down to `now`
        and the live entries put back."""
        heap, keys = self._heap, self._keys
        found: dict[str, None] = {}  # ordered, and a cheap "seen"
        live: list[tuple[float, str]] = []
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            entry = keys.get(key)
            if entry is not None and entry.due == at and key not in found:
                found[key] = None
                live.append((at, key))
        for item in live:
            heapq.heappush(heap, item)
        return list(found)

    def take(self, key: str) -> bool | None:
        """Take `key` off the queue to work on it: whether it was queued as a drift (None:
        it was not queued)."""
        entry = self._keys.get(key)
        if entry is None or entry.due is None:
            return None
        drift, entry.due, entry.drift = entry.drift, None, False
        return drift

    def next_due(self) -> float | None:
        self._trim()
        return self._heap[0][0] if self._heap else None

    def forget(self, key: str) -> None:
        """Everything about `key`: its file is no longer managed."""
        self._keys.pop(key, None)
        self._fighting.discard(key)

    def keys(self) -> set[str]:
        return set(self._keys)

    def _set_due(self, key: str, entry: _Key, at: float) -> None:
        entry.due = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > 2 * len(self._keys) + 64:
            self._heap = [(e.due, k) for k, e in self._keys.items() if e.due is not None]
            heapq.heapify(self._heap)

    def _trim(self) -> None:
        """Drop heap entries that no longer say a key's due time."""
        heap, keys = self._heap, self._keys
        while heap:
            at, key = heap[0]
            entry = keys.get(key)
            if entry is not None and entry.due == at:
                return
            heapq.heappop(heap)
