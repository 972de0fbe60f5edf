"""The start fast path: a stopped target's hosts file being written is a *trigger* to ask the
engine, at once, where the target now is. The file never gives the address.

Why a trigger and not the file's word: a stopped target's hosts file is not quiet. Every
container started with `--network container:<target>` (a sidecar) mounts it as its own
/etc/hosts and keeps running while the target is stopped, and the target's own entrypoint
writes it right after each start. Either can write an own entry that looks exactly like
Docker's. So the file only says "look now": Docker rebuilds it when the target starts,
a few milliseconds before the network connect event, and the network's inspect already
lists the target's new endpoint by then (or a few milliseconds later).

One job, on a thread of its own (so a slow engine never holds up inotify): for each
triggered target, inspect its networks until the engine lists it, then write its
address into the files of the dependents waiting for it, and hand the loop an
`EarlyStart` so that the loop's next pass agrees with those writes. A target whose file
keeps being written while the engine says it is not running is probed at a falling rate
(backoff per target, up to `MAX_BACKOFF`): a container writing in a loop costs a bounded
number of engine calls. If its file then holds an own entry the engine does not give it,
that is reported (once, by the loop) as a forged entry, with the running containers that
share the file.

That look at the file is taken when a round of probes ends, which is any moment of the
writer's work: a sidecar that writes like Docker (the file emptied to the localhost line,
then the full file) can be caught between its two steps at the end of every round. So a
round that finds no own entry keeps looking while its backoff runs: each write that closes
the file is read again (the file only, never the engine), until an own entry is found or
RECHECKS reads are spent, whichever comes first.

Imports: core, writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace

from hostsyncd.core.graph import (
    DependentPlan,
    FilePlan,
    Snapshot,
    netns_owner,
    replan_started,
)
from hostsyncd.core.hostsblock import own_addresses
from hostsyncd.core.model import Endpoint
from hostsyncd.writer import HostsFileError, HostsWriter, WriteResult

# How long after a trigger the engine is asked again while it does not list the target
# yet, in seconds: Docker writes the file a few milliseconds before the endpoint shows.
PROBE_DELAYS = (0.0, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
# After a trigger whose probes all found the target not running, further triggers for it
# wait this long, doubling up to MAX_BACKOFF: a sidecar rewriting the file in a loop must
# not turn into a loop of engine calls. The connect event still brings a real start.
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0
# Seconds a suspected forgery waits for the engine to report a start before it is said.
FORGED_GRACE = 1.0
# After a round found the target not running and its file without an own entry, at most
# this many of the file's next complete writes (closes) are read for one, during the
# backoff: a file written in a loop costs a bounded number of reads, as of engine calls.
RECHECKS = 8


@dataclass(frozen=True, slots=True)
class Waiting:
    """What the fast path works from, built by the loop's pass and handed over as one
    reference, so this thread never sees the loop's state half-changed."""

    snapshot: Snapshot
    dependents: dict[str, list[DependentPlan]]  # stopped target id -> waiting dependents
    label: str
    # Re-planned dependents that read one file -> that file's plan and transform.
    transform: Callable[[list[DependentPlan]], tuple[FilePlan, Callable[[bytes], bytes]]]
    health: str = "ignore"  # links.health
    domain: str = ""  # links.domain
    # Files of containers fighting us: the loop repairs them on a backoff, and finds them
    # calm only when our last write has stood that long, so no write of ours may come in
    # between (a look moments after one would take a fighter for calm).
    backed_off: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FastWrite:
    """One hosts file, written by the start fast path."""

    file: FilePlan
    result: WriteResult


@dataclass(frozen=True, slots=True)
class EarlyStart:
    """The engine listed a waiting target's new endpoint(s), and the waiting dependents'
    files were written with them. For the loop to adopt as its own read of the start."""

    target_id: str
    name: str
    endpoints: tuple[Endpoint, ...]
    writes: tuple[FastWrite, ...]


@dataclass(frozen=True, slots=True)
class ForgedEntry:
    """A stopped target's file holds an own entry the engine does not give it. `address`
    was checked to be an IP address; `shared_with` names the running containers that share
    the target's file (and so may have written it)."""

    target_id: str
    name: str
    address: str
    shared_with: tuple[str, ...]


class Suspects:
    """Forged entries waiting to be said. One is said only if its target has still not
    started FORGED_GRACE seconds after it was found: on a loaded machine the engine can
    list a real start later than the fast path asks. One per target; kept only while the
    target exists."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[ForgedEntry, float]] = {}

    def __bool__(self) -> bool:
        return bool(self._due)

    def add(self, found: ForgedEntry, now: float) -> None:
        if found.target_id not in self._due:
            self._due[found.target_id] = (found, now + FORGED_GRACE)

    def next_due(self) -> float | None:
        return min((due for _, due in self._due.values()), default=None)

    def take_due(self, now: float) -> list[ForgedEntry]:
        """The suspects whose grace is over, no longer kept."""
        ripe = [found for found, due in self._due.values() if due <= now]
        for found in ripe:
            del self._due[found.target_id]
        return ripe

    def forget(self, gone: Iterable[str]) -> None:
        for tid in gone:
            self._due.pop(tid, None)

    def __iter__(self) -> Iterator[str]:
        """The targets suspected."""
        return iter(self._due)


@dataclass(slots=True)
class _Probe:
    started: float
    attempt: int = 0
    due: float = 0.0


@dataclass(slots=True)
class _Backoff:
    until: float
    delay: float
    # Reads of the file left for an own entry (0: one was found, or none left to spend).
    rechecks: int = 0


# (network id) -> {container id: (name, endpoint)}: one inspect answers for every target
# on that network.
NetworkMembers = Callable[[str], dict[str, tuple[str, Endpoint]]]


class StartFastPath:
    def __init__(
        self,
        writer: HostsWriter,
        members: NetworkMembers,
        emit: Callable[[object], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.members = members
        self.emit = emit
        self.clock = clock
        self._waiting: Waiting | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._triggered: set[str] = set()
        self._closed: set[str] = set()  # of those, the ones whose writer closed the file
        self._stopping = False
        # Only this object's thread touches these.
        self._probes: dict[str, _Probe] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._thread: threading.Thread | None = None

    # -- the loop's side ----------------------------------------------------------------

    def arm(self, waiting: Waiting) -> None:
        """The targets that links now wait for, and their dependents (after each pass)."""
        self._waiting = waiting

    def back_off(self, files: frozenset[str]) -> None:
        """The files the loop now repairs on a backoff alone (see Waiting.backed_off)."""
        waiting = self._waiting
        if waiting is not None and waiting.backed_off != files:
            self._waiting = replace(waiting, backed_off=files)

    def waits_for(self, container_id: str) -> bool:
        waiting = self._waiting
        return waiting is not None and container_id in waiting.dependents

    # -- the watcher's side -------------------------------------------------------------

    def trigger(self, container_id: str, closed: bool = True) -> bool:
        """A watched file was written (`closed`: and its writer closed it). True if it is a
        waiting target's (this object's business); the caller treats any other file as
        drift."""
        if not self.waits_for(container_id):
            return False
        with self._wake:
            self._triggered.add(container_id)
            if closed:
                self._closed.add(container_id)
            self._wake.notify()
        return True

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="start-fast-path", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._wake:
                timeout = self._next_due()
                if not self._triggered and not self._stopping:
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                triggered, self._triggered = self._triggered, set()
                closed, self._closed = self._closed, set()
            try:
                self.step(triggered, closed)
            except Exception as exc:  # noqa: BLE001 - this thread must not die of a bug
                self.emit(exc)

    def _next_due(self) -> float | None:
        if not self._probes:
            return None
        return max(0.0, min(p.due for p in self._probes.values()) - self.clock())

    def step(self, triggered: set[str], closed: Collection[str] = ()) -> None:
        """Start probes for new triggers, then run every probe that is due; read again the
        files of backed-off targets that `closed` (the triggers whose writer closed the
        file) names. Public so that tests can drive it without the thread."""
        now = self.clock()
        waiting = self._waiting
        if waiting is None:
            return
        for gone in self._backoff.keys() - waiting.dependents.keys():
            del self._backoff[gone]  # started or removed since: a new start is welcome
        for gone in self._probes.keys() - waiting.dependents.keys():
            del self._probes[gone]
        for cid in triggered:
            if cid not in waiting.dependents:
                continue
            if cid in self._probes:
                # Another write while probing keeps the schedule: asking at the moment
                # Docker writes the own entry was measured slower, as the inspect then
                # waits for the engine to finish joining the network.
                continue
            backoff = self._backoff.get(cid)
            if backoff is not None and now < backoff.until:
                if backoff.rechecks and cid in closed:
                    # A complete write while backed off: the file only, not the engine.
                    backoff.rechecks = 0 if self._check_forged(waiting, cid) \
                        else backoff.rechecks - 1
                continue
            self._probes[cid] = _Probe(started=now, due=now)
        due = [cid for cid, p in self._probes.items() if p.due <= now]
        if not due:
            return
        found = self._ask_engine(waiting, due)
        now = self.clock()
        for cid in due:
            probe = self._probes[cid]
            endpoints = found.get(cid)
            if endpoints:
                del self._probes[cid]
                self._backoff.pop(cid, None)
                self._write(waiting, cid, endpoints)
                continue
            probe.attempt += 1
            if probe.attempt < len(PROBE_DELAYS):
                probe.due = probe.started + PROBE_DELAYS[probe.attempt]
                continue
            del self._probes[cid]
            previous = self._backoff.get(cid)
            delay = FIRST_BACKOFF if previous is None else min(previous.delay * 2, MAX_BACKOFF)
            found = self._check_forged(waiting, cid)
            self._backoff[cid] = _Backoff(now + delay, delay, 0 if found else RECHECKS)

    def _ask_engine(self, waiting: Waiting, due: list[str]) -> dict[str, tuple[Endpoint, ...]]:
        """The endpoints the engine lists now for each due target, one inspect per network."""
        networks: dict[str, list[str]] = {}
        for cid in due:
            target = waiting.snapshot.by_id.get(cid)
            for ep in target.endpoints if target is not None else ():
                if ep.network_id:
                    networks.setdefault(ep.network_id, []).append(cid)
        found: dict[str, list[Endpoint]] = {}
        for network_id, cids in networks.items():
            try:
                members = self.members(network_id)
            except Exception:  # noqa: BLE001 - the engine away: the loop hears of it too
                continue
            for cid in cids:
                member = members.get(cid)
                if member is not None and (member[1].ipv4 or member[1].ipv6):
                    found.setdefault(cid, []).append(member[1])
        return {cid: tuple(eps) for cid, eps in found.items()}

    def _write(self, waiting: Waiting, cid: str, endpoints: tuple[Endpoint, ...]) -> None:
        target = waiting.snapshot.by_id[cid]
        plans = replan_started(waiting.snapshot, target, endpoints, waiting.dependents[cid],
                               waiting.label, waiting.health, waiting.domain)
        by_file: dict[str, list[DependentPlan]] = {}
        for plan in plans:
            if plan.unmanaged is None:
                by_file.setdefault(plan.hosts_file, []).append(plan)
        writes = []
        for fid, started in by_file.items():
            if fid in waiting.backed_off:
                continue
            found, transform = waiting.transform(started)
            try:
                result = self.writer.update(fid, transform, expect_change=True)
            except HostsFileError:
                continue  # the loop's pass tries again, and reports it
            writes.append(FastWrite(found, result))
        self.emit(EarlyStart(cid, target.name, endpoints, tuple(writes)))

    def _check_forged(self, waiting: Waiting, cid: str) -> bool:
        """The engine says the target is not running, yet its file was written. If the file
        holds an own entry, someone who shares the file forged it: emitted for the loop,
        which says it if the engine still lists no start FORGED_GRACE later. True if found."""
        try:
            own = [ip for ip in own_addresses(self.writer.read(cid), cid[:12]) if ip]
        except HostsFileError:
            return False
        if not own:
            return False
        snapshot = waiting.snapshot
        target = snapshot.by_id[cid]
        sharers = tuple(sorted(
            c.name for c in snapshot
            if c.id != cid and c.is_live and c.network_mode.startswith("container:")
            and (owner := netns_owner(snapshot, c)) is not None and owner.id == cid
        ))
        self.emit(ForgedEntry(cid, target.name, own[0], sharers))
        return True
