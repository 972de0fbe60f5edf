"""Turn hints into writes: recompute what every dependent's file should hold, write the ones
that differ. Events only say *that* something changed; the snapshot says what is true.

Two costs, kept apart: a *pass* re-plans the dependents that the changes since the last
one touch (every dependent at resync); a *repair* only re-applies the plans already made
to the files that are due in the work queue (a file someone wrote, a retry). A container
rewriting its own file therefore never costs a pass, and one that keeps doing it is backed
off on its own (core/workqueue.py: one queue of hosts files, rate-limited per file).

What is said about a decision or a write is worded in reports.py, from the reasons the
core returned and the writer's results. HostsPaths is the writer's locator: where each
container's hosts file is.

Imports: config, core, engine, fastpath, problems, reports, state, stats, watcher, writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostsyncd.config import Config
from hostsyncd.core.graph import DependentPlan, FilePlan, RemoteIndex, Snapshot
from hostsyncd.core.model import Container
from hostsyncd.core.observed import ObservedState
from hostsyncd.core.reconcile import Kept, Result, file_block, transform
from hostsyncd.core.reconcile import reconcile as decide
from hostsyncd.core.workqueue import Retry, WorkQueue
from hostsyncd.engine import Engine, EngineEvent, EngineUnavailable
from hostsyncd.fastpath import EarlyStart, ForgedEntry, StartFastPath, Suspects, Waiting
from hostsyncd.problems import ProblemLog
from hostsyncd.reports import Reports
from hostsyncd.state import LastWrite
from hostsyncd.stats import PassKind, Stats, WriteFailure, WriteKind
from hostsyncd.watcher import Drift
from hostsyncd.writer import HostsFileError, HostsFileGone, HostsWriter

# After this many looks in a row, an empty file is the container's doing, not Docker's.
RACE_RETRIES = 10
# A batch of events naming more containers than this lists them all: one call either way,
# and the engine's id filter is a pattern match per container per id.
MAX_LISTED_IDS = 32
# The HostsPath cache's mark for a container that shares another's hosts file (Podman).
_SHARED = "\0shared"


@dataclass(slots=True)
class PassResult:
    written: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToList:
    """What the list call after a batch of events asks the engine about: the containers
    the events named, or everyone."""

    ids: frozenset[str] = frozenset()
    everyone: bool = False

    def __bool__(self) -> bool:
        return self.everyone or bool(self.ids)


class HostsPaths:
    """The writer's `locate`: where each container's hosts file is. Docker's is always
    `<containers_root>/<id>/hosts` (no API call); Podman's is what its inspect says, asked
    once per container (it stays put across restarts, measured) and forgotten with it."""

    def __init__(self, engine: Engine, containers_root: Path) -> None:
        self.engine = engine
        self.containers_root = containers_root
        self.podman = False  # what the engine was at the last list
        self._found: dict[str, str] = {}

    def engine_is(self, podman: bool) -> None:
        """Told on the loop's thread, at each list: locate() runs on the fast path's thread
        too, and must know the engine without a call (the engine is not thread-safe)."""
        if podman != self.podman:
            self._found.clear()  # another engine at the URL
            self.podman = podman

    def locate(self, container_id: str) -> str:
        if not self.podman:
            return str(self.containers_root / container_id / "hosts")
        found = self._found.get(container_id)
        if found is None:
            try:
                located = self.engine.hosts_path(container_id)
            except EngineUnavailable as exc:
                raise HostsFileError(container_id, f"cannot ask the engine where the hosts "
                                     f"file is: {exc}") from None
            if located is None:
                raise HostsFileGone(container_id, "engine gives no hosts file")
            path, mode = located
            # A sharer's HostsPath is the other container's file (measured): Podman's list
            # gives no NetworkMode, so the core cannot merge the two files' plans, and two
            # blocks written to one file would undo each other. Refused instead.
            found = _SHARED if mode.startswith("container:") else path
            self._found[container_id] = found
        if found == _SHARED:
            raise HostsFileError(
                container_id, "shares another container's network and hosts file "
                "(--network container:...), which Podman's list does not say; not written: "
                "declare the links on that container", kind=WriteFailure.REFUSED)
        return found

    def forget(self, gone: Iterable[str]) -> None:
        for cid in gone:
            self._found.pop(cid, None)

    def __iter__(self) -> Iterator[str]:
        """The containers whose path is cached."""
        return iter(list(self._found))  # a copy: the fast path's thread may add one


class Reconciler:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        writer: HostsWriter,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
        watch: Callable[[set[str]], None] = lambda _: None,
        problems: ProblemLog | None = None,
        paths: HostsPaths | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.writer = writer
        self.log = log
        self.clock = clock
        self.watch = watch
        self.observed = ObservedState()
        self.plans: Mapping[str, DependentPlan] = {}
        # What is written: each hosts file, with every dependent that reads it. Everything
        # below that is about a file (queue, races, fights, last write) is keyed by its id.
        self.files: Mapping[str, FilePlan] = {}
        self.stopped_targets: set[str] = set()
        self.problems = problems if problems is not None else ProblemLog(log)
        self.reports = Reports(self.problems, log)
        # What the work came to, by kind: for the state file's counts and for metrics.py.
        self.stats = Stats()
        # The block each file was last written or found with.
        self._applied: dict[str, bytes] = {}
        self.blocks: Mapping[str, bytes] = {}  # the block each file should hold
        # The last decision: the next pass plans only what the changes since then touch.
        self._decided: Result | None = None
        # The one work queue: each hosts file (by its owner's id), when it is next looked
        # at and why, with a rate-limited requeue per file (races, failures, fights).
        self.queue = WorkQueue()
        # Stopped targets whose file held an own entry the engine did not confirm.
        self._suspects = Suspects()
        # Keep mode: per dependent, per alias, the lines the engine last gave.
        self.kept: dict[str, Kept] = {}
        self.fastpath: StartFastPath | None = None
        # The cluster's publish hook, when the cluster is on (Cluster.publish_from).
        self.publisher: Callable[[Snapshot], Mapping[str, str] | None] | None = None
        # Stopped targets whose healthcheck the engine was asked about (see
        # _learn_healthchecks); forgotten with the container.
        self._health_asked: set[str] = set()
        # Where each hosts file is: learns the engine's kind at each list, and forgets
        # with the container (the writer's `locate`, when the daemon wires it).
        self.paths = paths if paths is not None else \
            HostsPaths(engine, config.docker.containers_root)

    @property
    def last_write(self) -> Mapping[str, LastWrite]:
        """Each file's last write, for `status`."""
        return self.reports.last_write

    def reconfigure(self, config: Config) -> None:
        """A reloaded config (the rest of it waits for a restart)."""
        self.config = config

    # -- inputs -------------------------------------------------------------------------

    def take_remote(self, node: str | None, remote: Iterable[Container] | RemoteIndex,
                    bare_names: bool = False, changed: Iterable[str] | None = None) -> bool:
        """Other nodes' published records (see ObservedState.cluster). True if that changed
        what links resolve to."""
        return self.observed.cluster(node, remote, bare_names, changed)

    def forget_events(self) -> None:
        """After a reconnect: the next list is the whole truth."""
        self.observed.forget_events()

    def containers(self) -> int:
        """How many containers are known, here and on other nodes."""
        return len(self.observed.snapshot())

    def refresh(self, asked: ToList | None = None) -> None:
        """One list call: the level truth the events are hints about. With `asked` (from
        apply_events), of the containers the events named alone: an event then costs what
        it names, not a comparison of the fleet. Everyone without it (the resync), when the
        events say so, and on Podman (its compat API's filters are not Docker's)."""
        podman = bool(self.engine.podman)
        self.paths.engine_is(podman)
        only = None if asked is None or asked.everyone or podman else asked.ids
        self.observed.listed(self.engine.list_containers(only), self.clock(), only)
        self.log.debug("containers listed", asked="all" if only is None else len(only))

    def apply_events(self, events: Iterable[EngineEvent]) -> tuple[ToList, bool]:
        """Fold events into the observed state. Returns (what a list call must ask about
        to finish, false if nothing; whether to write before that list call). Written
        first: a freed address, which must leave the files before the next container to
        start takes it; and a connect's endpoint, which the engine edge resolved, so the
        list call that a start right behind it asks for (Docker 28 sends them together)
        does not hold the new address back."""
        asked: set[str] = set()
        first = False
        for event in events:
            need_list = False
            now = self.clock()
            self.stats.events += 1
            self.log.debug("engine event", type=event.type, action=event.action,
                           container_id=event.container_id)
            if event.type == "network" and event.action == "connect":
                # The engine edge asked the network, which knows the address while the
                # list may not for another 200 ms. Docker also rebuilt or appended to this
                # container's own file, so check it.
                if event.endpoint is not None:
                    self.observed.connected(event.container_id, event.member_name,
                                            event.endpoint, now)
                    first = True
                else:
                    need_list = True
                self._queue(event.container_id, now)
            elif event.type == "network" and event.action == "disconnect":
                # Docker 26 and newer free a stopping container's address here, before its
                # `die`, and `docker stop` returns right after.
                self.observed.disconnected(event.container_id, event.network_id, now)
                self._queue(event.container_id, now)
                need_list = first = True
            elif event.action == "health_status":
                # The event carries the new status; the list would only repeat it, and a
                # link waiting for health should not wait for a list call too.
                if event.health:
                    self.observed.health(event.container_id, event.health, now)
                else:
                    need_list = True
            elif event.action in ("die", "destroy"):
                # Drop the lines now, before the freed address can go to someone else.
                self.observed.stopped(event.container_id, now)
                need_list = first = True
            elif event.action == "rename" and event.container_name:
                # The list may show both names for a while, even after this event: the
                # event says which one is current.
                self.observed.renamed(event.container_id, event.container_name,
                                      event.old_name, now)
                need_list = True
            else:
                if event.action == "start":
                    self._queue(event.container_id, now)
                need_list = True
            if need_list:
                asked.add(event.container_id)
        # An event that names no container could be about anyone; past a few ids, one
        # list of everyone costs less than a filter that long.
        if "" in asked or len(asked) > MAX_LISTED_IDS:
            return ToList(everyone=True), first
        return ToList(frozenset(asked)), first

    def drifted(self, drifts: Iterable[Drift]) -> None:
        """Dependents' hosts files were written. Each is checked for our block once its
        writer is done (see WorkQueue.drift). Our own writes come back here too: a file
        still as the writer left it is no work."""
        now = self.clock()
        ours: dict[str, bool] = {}  # a stat per file and batch
        for drift in drifts:
            cid = drift.container_id
            if cid not in self.files:
                continue
            if cid not in ours:
                ours[cid] = self.writer.as_left(cid)
            if not ours[cid]:
                self.queue.drift(cid, now, drift.closed)

    def started(self, early: EarlyStart) -> None:
        """On the loop: what the start fast path asked the engine and wrote. The next pass
        checks those files against the loop's own, newer plans."""
        now = self.clock()
        for endpoint in early.endpoints:
            self.observed.connected(early.target_id, early.name, endpoint, now)
        self.log.debug("target started (engine asked on its hosts file's rebuild)",
                       container_id=early.target_id, container_name=early.name,
                       ipv4=[ep.ipv4 for ep in early.endpoints],
                       ipv6=[ep.ipv6 for ep in early.endpoints])
        for write in early.writes:
            self._queue(write.file.owner, now)
            if write.result.changed:
                self.stats.writes[WriteKind.FASTPATH] += 1
            self.reports.written(write.file, write.result, [], self.writer.max_bytes)

    def forged(self, found: ForgedEntry) -> None:
        """A stopped target's file holds an own entry the engine did not give it (said
        later, if still so: see Suspects)."""
        self._suspects.add(found, self.clock())

    @property
    def retry_due(self) -> float | None:
        """When the loop must come back without a hint: a file due, or a suspect's grace."""
        dues = [due for due in (self._suspects.next_due(), self.queue.next_due())
                if due is not None]
        return min(dues, default=None)

    def _report_forged(self, now: float) -> None:
        if not self._suspects:
            return  # the usual case: no snapshot to (re)build on every repair
        snapshot = self.observed.snapshot()
        for found in self._suspects.take_due(now):
            target = snapshot.by_id.get(found.target_id)
            if target is not None and not target.has_address:  # not removed, nor started
                self.reports.forged(found)

    @property
    def watched(self) -> set[str]:
        """The hosts files whose writes are hints: dependents' (less those fighting us, which
        are repaired on a timer instead) and stopped targets' (the fast path's triggers)."""
        return (self.files.keys() - self.queue.fighters()) | self.stopped_targets

    # -- the pass -----------------------------------------------------------------------

    @property
    def writes(self) -> int:
        return sum(self.stats.writes.values())

    @property
    def write_errors(self) -> int:
        return sum(self.stats.write_errors.values())

    def reconcile(self, verify_all: bool = False, since: float | None = None) -> PassResult:
        """Re-plan the dependents the snapshot's changes touch (every one with
        verify_all, the resync's full pass); write those whose plan changed and those
        that are due (all of them with verify_all). `since`: when the oldest engine
        event this pass follows was read (the clock's time), to time how long its change
        took to reach the files. With several events in one batch that is an upper bound
        for the later ones: the batch is one pass, and which event a write follows from is
        not tracked."""
        started = self.clock()
        snapshot = self.observed.snapshot()
        if self.publisher is not None:
            # First: another host is waiting for it.
            unpublishable = self.publisher(snapshot)
            if unpublishable is not None:
                self.reports.unpublishable(snapshot, unpublishable)
        keep = self.config.links.on_target_stop == "keep"
        links = self.config.links
        changed = self.observed.take_changes()
        decided = decide(snapshot, self._applied, links.label, keep, self.kept, links.health,
                         previous=None if verify_all else self._decided, changed=changed,
                         domain=links.domain,
                         remote_changed=self.observed.take_remote_changes())
        replanned = decided.replanned
        if self._learn_healthchecks(decided.waiting):
            # Rare (once per such target): the fast path must know it starts as STARTING.
            snapshot = self.observed.snapshot()
            more = self.observed.take_changes()
            decided = decide(snapshot, self._applied, links.label, keep, self.kept,
                             links.health, previous=decided, changed=more,
                             domain=links.domain,
                             remote_changed=self.observed.take_remote_changes())
            changed = None if changed is None or more is None else changed | more
            replanned = None if replanned is None or decided.replanned is None \
                else replanned | decided.replanned
        self._decided = decided
        self._forget(snapshot, decided.files, None if verify_all else changed, replanned)
        self.plans, self.files, self.blocks = decided.plans, decided.files, decided.blocks
        if keep:
            self.kept = dict(decided.kept)
        self.stopped_targets = set(decided.waiting)
        if self.fastpath is not None:
            self.fastpath.arm(Waiting(snapshot, dict(decided.waiting), links.label,
                                      self._transform_for, links.health, links.domain,
                                      self.queue.fighters()))
        # Watch before writing: a rewrite that lands right after our write must be seen.
        self.watch(self.watched)
        now = self.clock()
        chosen = list(decided.files) if verify_all else \
            list(dict.fromkeys([*decided.writes, *self.queue.due(now)]))
        result = self._apply(chosen, now, since)
        self.reports.decided(decided)
        self.stats.passes[PassKind.FULL if verify_all else PassKind.EVENTS] += 1
        self.stats.pass_seconds.observe(self.clock() - started)
        return result

    def _learn_healthchecks(self, waiting: Mapping[str, list[DependentPlan]]) -> bool:
        """Ask the engine, once per container, whether a stopped target that a dependent
        waits for with links.health = "wait" has a healthcheck: one never seen running has
        no health in the list, and its start would otherwise give a line while it is
        still starting. True if one was found."""
        snapshot = self.observed.snapshot()
        found = False
        for tid, dependents in waiting.items():
            target = snapshot.by_id.get(tid)
            if target is None or target.health or tid in self._health_asked \
                    or not any(p.health_wait for p in dependents):
                continue
            try:
                has = self.engine.has_healthcheck(tid)
            except EngineUnavailable:
                continue  # asked again on the next pass
            self._health_asked.add(tid)
            if has:
                self.observed.healthchecked(tid)
                found = True
        return found

    def repair(self) -> PassResult:
        """Without a pass: bring the files that are due back to the plans already made."""
        now = self.clock()
        return self._apply(self.queue.due(now), now)

    def _apply(self, chosen: list[str], now: float, since: float | None = None) -> PassResult:
        result = PassResult()
        deferred: list[Callable[[], None]] = []
        queue = self.queue
        fighting = queue.fighters()
        for cid in chosen:
            plan = self.files.get(cid)
            drifted = queue.take(cid) is True
            if plan is None:
                queue.forget(cid)  # a container that reads no managed file (any more)
                continue
            changed = self._applied.get(cid) != self.blocks.get(cid)
            outcome = self._write(plan, deferred, drifted, expect_change=changed and not drifted)
            if outcome is True:
                result.written += 1
                # A block that was already applied and written again was put back after
                # someone else's write (seen by the watcher, or at a resync).
                self.stats.writes[WriteKind.UPDATE if changed else WriteKind.REPAIR] += 1
                if changed and since is not None:
                    self.stats.propagation_seconds.observe(self.clock() - since)
                if drifted and not changed:
                    self._count_repair(plan, now, deferred)
            elif outcome is False and drifted and queue.fighting(cid):
                self._calmed(plan, deferred)  # found as we left it: calm again
            elif outcome is None and not queue.queued(cid) and not queue.fighting(cid):
                result.failed.append(cid)
                queue.retry(cid, now, Retry.FAILED, first=self.config.sync.retry_interval)
            if queue.fighting(cid) and not queue.queued(cid):
                # Repaired on a timer from now on, at a falling rate: its writes are not
                # watched.
                queue.retry(cid, now, Retry.FIGHT, drift=True)
        self._report_forged(now)
        if queue.fighters() != fighting:  # a fight began or ended
            self.watch(self.watched)
            if self.fastpath is not None:
                self.fastpath.back_off(queue.fighters())
        # Logged after all the writes: with many dependents of one target, the last file
        # must not wait for the log lines of all the others.
        for report in deferred:
            report()
        return result

    def _queue(self, cid: str, due: float) -> None:
        """Look at this container's file at `due` (or sooner, if already queued sooner).
        A container that reads no managed file has nothing to look at: if it becomes a
        dependent, the pass writes its file anyway (nothing was applied to it)."""
        found = self.plans.get(cid)
        fid = found.hosts_file if found is not None else cid  # a sidecar's: its owner's
        if fid in self.files:
            self.queue.add(fid, due)

    def _forget(self, snapshot: Snapshot, files: Mapping[str, FilePlan],
                changed: Iterable[str] | None, replanned: Iterable[str] | None) -> None:
        """Drop what was kept about files no dependent reads any more, and about containers
        that went: everything kept per container goes with it. An event's pass looks only
        at what it changed: the containers that changed (a removed one is among them), and
        the files of the dependents it planned again (only theirs can lose their last
        reader). A full pass, or one whose changes are not known, sweeps every store: that
        also catches what a fast-path report kept about a container removed meanwhile."""
        if replanned is None:
            dropped = self.files.keys() - files.keys()
        else:
            dropped = {fid for cid in replanned if (old := self.plans.get(cid)) is not None
                       and (fid := old.hosts_file) in self.files and fid not in files}
        for fid in dropped:
            self._applied.pop(fid, None)
            self.queue.forget(fid)
            self.writer.forget(fid)
        held = changed if changed is not None else {
            *self.kept, *self._health_asked, *self._suspects, *self.paths,
            *self.reports.held()}
        gone = [cid for cid in held if cid not in snapshot.by_id]
        for cid in gone:
            self.kept.pop(cid, None)
            self._health_asked.discard(cid)
        self._suspects.forget(gone)
        self.reports.forget(gone)
        self.paths.forget(gone)

    def _transform_for(
        self, started: list[DependentPlan]
    ) -> tuple[FilePlan, Callable[[bytes], bytes]]:
        """For the fast path: the file these re-planned dependents read (they share one),
        with the other dependents that read it as they are, and its transform."""
        fid = started[0].hosts_file
        new = {plan.dependent.id: plan for plan in started}
        current = self.files.get(fid)
        others = [p for p in (current.plans if current else ()) if p.dependent.id not in new]
        plans = sorted([*others, *new.values()],
                       key=lambda p: (p.dependent.id != fid, p.dependent.name))
        found = FilePlan(fid, tuple(plans), current.owner_name if current else fid[:12])
        block = file_block(found, self.config.links.on_target_stop == "keep", self.kept)
        return found, transform(block, self.writer.max_bytes, [], self._applied.get(fid, b""))

    def _write(
        self, plan: FilePlan, deferred: list[Callable[[], None]], drifted: bool,
        expect_change: bool,
    ) -> bool | None:
        """True if written, False if already right (or not there), None if it failed or
        someone else was writing the file at the same moment (raced: not known to be
        right; queued again in a moment). What is to be logged about it is appended to
        `deferred`."""
        fid = plan.owner
        block = self.blocks.get(fid, b"")
        overflow: list[int] = []
        try:
            # A container fighting us gets one write per backoff, racing or not.
            fighting = self.queue.fighting(fid)
            patient = not fighting and self.queue.attempts(fid, Retry.RACE) < RACE_RETRIES
            apply = transform(block, self.writer.max_bytes, overflow, self._applied.get(fid, b""))
            result = self.writer.update(fid, apply, defer_empty=patient,
                                        expect_change=expect_change)
        except HostsFileGone:
            return False  # created but not started, or being removed; its start is a hint
        except HostsFileError as exc:
            self.stats.write_errors[exc.kind] += 1
            reason = exc.reason
            deferred.append(lambda: self.reports.write_failed(plan, reason))
            return None
        self.queue.done(fid, Retry.FAILED)
        deferred.append(lambda: self.reports.written(plan, result, overflow,
                                                    self.writer.max_bytes))
        if result.raced and not fighting:
            # Docker (or someone) was rewriting the file at the same moment: look again
            # shortly rather than build on a half-written file. A repair's retry is still
            # a repair.
            self.queue.retry(fid, self.clock(), Retry.RACE, drift=drifted)
        else:
            self.queue.done(fid, Retry.RACE)
            self._applied[fid] = block
        if result.changed:
            return True
        return None if result.raced else False

    # -- a container fighting us --------------------------------------------------------

    def _count_repair(self, plan: FilePlan, now: float,
                      deferred: list[Callable[[], None]]) -> None:
        """Our block was put back after someone else's write. Often: a fight (the queue
        backs its repairs off from now on)."""
        if self.queue.repaired(plan.owner, now):
            deferred.append(lambda: self.reports.fight(plan))

    def _calmed(self, plan: FilePlan, deferred: list[Callable[[], None]]) -> None:
        """A backed-off dependent's file was found as we left it: it stopped fighting."""
        self.queue.done(plan.owner, Retry.FIGHT)
        deferred.append(lambda: self.reports.calmed(plan))
