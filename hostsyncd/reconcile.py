"""Turn hints into writes: recompute what every dependent's file should hold, write the ones
that differ. Events only say *that* something changed; the snapshot says what is true."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hostsyncd.config import Config
from hostsyncd.core.graph import (
    DependentPlan,
    Problem,
    Resolution,
    Snapshot,
    plan_all,
    replan_started,
    waiting_dependents,
)
from hostsyncd.core.hostsblock import (
    block_lines,
    merge,
    own_addresses,
    render_block,
    strip_block,
)
from hostsyncd.core.model import Endpoint
from hostsyncd.core.observed import ObservedState
from hostsyncd.core.records import published
from hostsyncd.engine import Engine, EngineEvent
from hostsyncd.problems import ProblemLog
from hostsyncd.writer import HostsFileError, HostsFileGone, HostsWriter, WriteResult

# Seconds before a file that was being rewritten by someone else is looked at again.
RACE_RETRY = 0.02
# Seconds of quiet after a write without a close before the file is checked anyway (the
# NOTES saw one Docker rewrite with no close event).
QUIET = 0.1
# After this many looks in a row, an empty file is the container's doing, not Docker's.
RACE_RETRIES = 10
# Problems that are routine while containers come and go: said at info, not as warnings.
_ROUTINE = (Problem.MISSING, Problem.NOT_RUNNING, Problem.NOT_PUBLISHED)


@dataclass(frozen=True, slots=True)
class Drift:
    """A hosts file hostsyncd watches was written by someone.

    `closed`: the writer closed the file. A write without a close may be one piece of
    several (a shell redirect, stdio buffers): acting on it would put our block in the
    middle of someone else's write.
    """

    container_id: str
    closed: bool = True


@dataclass(frozen=True, slots=True)
class FastWrite:
    """One dependent's file, written by the start fast path."""

    plan: DependentPlan
    result: WriteResult
    overflow: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EarlyStart:
    """The start fast path read a stopped target's new address from Docker's rebuild of its
    hosts file, on the watcher's thread, and wrote it to the dependents waiting for it. For
    the loop to believe as it would its own read of the rebuild, and to log and count."""

    target_id: str
    name: str
    endpoint: Endpoint
    writes: tuple[FastWrite, ...]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """What the start fast path works from. Built by the loop's pass and published as one
    reference, so the watcher's thread never sees the loop's state half-changed."""

    snapshot: Snapshot
    dependents: dict[str, list[DependentPlan]]  # stopped target id -> its waiting dependents
    own_when_stopped: dict[str, tuple[str, str]]  # see Reconciler._own_when_stopped
    label: str
    keep: bool


@dataclass(slots=True)
class LastWrite:
    at: float
    added: list[str]
    removed: list[str]


@dataclass(slots=True)
class PassResult:
    written: int = 0
    failed: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        writer: HostsWriter,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
        watch: Callable[[set[str]], None] = lambda _: None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.writer = writer
        self.log = log
        self.clock = clock
        self.watch = watch
        self.observed = ObservedState()
        self.plans: dict[str, DependentPlan] = {}
        self.stopped_targets: set[str] = set()
        self.last_write: dict[str, LastWrite] = {}
        self.problems = ProblemLog(log)
        self.writes = 0
        self.write_errors = 0
        self._applied: dict[str, tuple[Resolution, ...]] = {}
        self._dirty: set[str] = set()
        self._races: dict[str, int] = {}
        # Dependents whose file someone is writing without having closed it: when we saw it.
        self._writing: dict[str, float] = {}
        self.retry_due: float | None = None
        # The own entry in each waiting target's file when a pass first found it stopped.
        # Its processes are gone by then, so a different own entry later is Docker's
        # rebuild at start, even when the watcher's thread got to the file only after both
        # halves of the rebuild (as happens on a loaded machine).
        self._own_when_stopped: dict[str, tuple[str, str]] = {}
        self._waiting: _Waiting | None = None  # published for the watcher's thread
        # Only the watcher's thread touches these (see `file_written`): the stopped targets
        # whose file was seen without its own entry, the first half of Docker's rebuild;
        # the own entry each start was written with, so the rest of the same rebuild is
        # not written again; the published state they were pruned against.
        self._rebuild_seen: set[str] = set()
        self._started_with: dict[str, tuple[str, str]] = {}
        self._seen_under: _Waiting | None = None
        # The cluster's publish hook, when the cluster is on: this node's records by name.
        self.publisher: Callable[[dict[str, bytes]], None] | None = None
        self._unpublishable: set[str] = set()
        self._published_from: Snapshot | None = None

    # -- inputs -------------------------------------------------------------------------

    def refresh(self) -> None:
        """One list call: the level truth the events are hints about."""
        self.observed.listed(self.engine.list_containers(), self.clock())

    def apply_events(self, events: Iterable[EngineEvent]) -> bool:
        """Fold events into the observed state; True if a list call is needed to finish."""
        need_list = False
        for event in events:
            now = self.clock()
            self.log.debug("engine event", type=event.type, action=event.action,
                           container_id=event.container_id)
            if event.type == "network" and event.action == "connect":
                # The fast path: the network already knows the address while the list may
                # not for another 200 ms. Docker also rebuilt or appended to this
                # container's own file, so check it.
                found = self.engine.network_endpoint(event.network_id, event.container_id)
                if found is not None:
                    self.observed.connected(event.container_id, found[0], found[1], now)
                else:
                    need_list = True
                self._dirty.add(event.container_id)
            elif event.type == "network" and event.action == "disconnect":
                self.observed.disconnected(event.container_id, event.network_id, now)
                self._dirty.add(event.container_id)
                need_list = True
            elif event.action in ("die", "destroy"):
                # Drop the lines now, before the freed address can go to someone else.
                self.observed.stopped(event.container_id, now)
                need_list = True
            else:
                if event.action == "start":
                    self._dirty.add(event.container_id)
                need_list = True
        return need_list

    def drifted(self, drifts: Iterable[Drift]) -> bool:
        """Dependents' hosts files were written. Each gets checked for our block once its
        writer is done (closed the file, or went quiet). True if a pass is needed now.
        (Stopped targets' files are the watcher thread's: see `file_written`.)"""
        now = self.clock()
        needed = False
        for drift in drifts:
            cid = drift.container_id
            if cid in self.plans:
                if drift.closed:
                    self._writing.pop(cid, None)
                    self._dirty.add(cid)
                    needed = True
                else:
                    self._writing[cid] = now
                    self._retry_soon_only(now + QUIET)
        return needed

    def file_written(self, container_id: str, closed: bool) -> list[Drift | EarlyStart]:
        """On the watcher's thread, for every write of a watched file: the hints for the
        loop. A dependent's file gets a Drift. A stopped target's file is this thread's
        alone: the loop reading it too would only compete for the interpreter at the moment
        the new address must go out, and could take a watch away from under the last
        event of Docker's rebuild. See `started_early`."""
        waiting = self._waiting
        if waiting is None or container_id not in waiting.dependents:
            return [Drift(container_id, closed)]
        if waiting is not self._seen_under:  # a pass since: forget targets that started
            self._seen_under = waiting
            self._rebuild_seen &= waiting.dependents.keys()
            for gone in self._started_with.keys() - waiting.dependents.keys():
                del self._started_with[gone]
        early = self.started_early(waiting, container_id)
        return [early] if early is not None else []

    def started_early(self, waiting: _Waiting, container_id: str) -> EarlyStart | None:
        """If this write of a stopped target's file is Docker finishing the rebuild of the
        file at the target's start, write the target's new address into the files of the
        dependents waiting for it, at once.

        Docker rebuilds a container's hosts file when it starts, first without and then
        with the container's own entry, about a millisecond after it writes `--link` files
        and a few before the connect event (when the network can be inspected). A stopped
        container runs no process that could write the file, so once the rebuild has been
        seen to begin, or the own entry differs from the one the file held when the target
        was found stopped, the own entry is Docker's word. Only single-network targets
        qualify: the entry does not say which network the address is on.

        This skips the hop to the loop and the loop's pass over every dependent. It works
        only from what the last pass published and touches nothing of the loop's; the loop
        takes the EarlyStart it returns as its own read of the start (so its next pass
        agrees with these writes instead of undoing them), and that pass has the last word.
        """
        dependents = waiting.dependents.get(container_id)
        target = waiting.snapshot.by_id.get(container_id)
        if not dependents or target is None or len(target.endpoints) != 1:
            # Only single-network targets: the own entry does not say which network it is on.
            self._rebuild_seen.discard(container_id)
            return None
        try:
            content = self.writer.read(container_id)
        except HostsFileError:
            return None
        own = own_addresses(content, container_id[:12])
        if not any(own):
            self._rebuild_seen.add(container_id)
            self._started_with.pop(container_id, None)  # a new rebuild: a new start
            return None
        before = waiting.own_when_stopped.get(container_id)
        if container_id not in self._rebuild_seen and (before is None or own == before):
            return None
        if self._started_with.get(container_id) == own:
            return None  # the rest of the same rebuild
        self._rebuild_seen.discard(container_id)
        self._started_with[container_id] = own
        network = target.endpoints[0]
        endpoint = Endpoint(network.network, network.network_id, own[0], own[1])
        limit = self.writer.max_bytes
        out = []
        for plan in replan_started(waiting.snapshot, target, endpoint, dependents,
                                   waiting.label):
            overflow: list[int] = []
            try:
                result = self.writer.update(plan.dependent.id,
                                            _transform(plan, waiting.keep, limit, overflow),
                                            expect_change=True)
            except HostsFileError:
                continue  # the loop's pass tries again, and reports it
            out.append(FastWrite(plan, result, tuple(overflow)))
        return EarlyStart(container_id, target.name, endpoint, tuple(out))

    def started(self, early: EarlyStart) -> None:
        """On the loop: what `started_early` read and wrote. The next pass checks those files
        against the loop's own, newer plans."""
        self.observed.connected(early.target_id, early.name, early.endpoint, self.clock())
        self.log.debug("address from Docker's hosts rebuild", container_id=early.target_id,
                       ipv4=early.endpoint.ipv4, ipv6=early.endpoint.ipv6, early=True)
        for write in early.writes:
            self._dirty.add(write.plan.dependent.id)
            if write.result.changed:
                self.writes += 1
            self._report_write(write.plan, write.result, list(write.overflow),
                               self.writer.max_bytes)

    @property
    def watched(self) -> set[str]:
        """The hosts files whose writes are hints: dependents' and stopped targets'."""
        return self.plans.keys() | self.stopped_targets

    # -- the pass -----------------------------------------------------------------------

    def reconcile(self, verify_all: bool = False) -> PassResult:
        """Bring every live dependent's file to its plan; touch only what may differ."""
        snapshot = self.observed.snapshot()
        if self.publisher is not None:
            self._publish(snapshot)  # first: another host is waiting for it
        plans = plan_all(snapshot, self.config.links.label)
        result = PassResult()
        for stopped in self.plans.keys() - plans.keys():
            self._applied.pop(stopped, None)
            self._races.pop(stopped, None)
            self._writing.pop(stopped, None)
            if stopped not in snapshot.by_id:
                # Only a removed container forgets what was said about it: a restart must
                # not repeat the same warnings.
                for kind in ("links", "file", "waiting"):
                    self.problems.forget(f"{stopped}/{kind}")
        self.plans = plans
        waiting = waiting_dependents(snapshot, plans.values())
        self.stopped_targets = set(waiting)
        self._note_own_entries(self.stopped_targets)
        self._waiting = _Waiting(snapshot, waiting, dict(self._own_when_stopped),
                                 self.config.links.label,
                                 self.config.links.on_target_stop == "keep")
        # Watch before writing: a rewrite that lands right after our write must be seen.
        self.watch(self.watched)
        dirty, self._dirty = self._dirty, set()
        self.retry_due = None
        now = self.clock()
        for cid, since in list(self._writing.items()):
            if now - since >= QUIET:  # the writer went quiet without closing: look now
                del self._writing[cid]
                dirty.add(cid)
            else:
                self._retry_soon_only(since + QUIET)
        reports: list[Callable[[], None]] = []
        for cid, plan in plans.items():
            changed = self._applied.get(cid) != plan.links
            if verify_all or cid in dirty or changed:
                outcome = self._write(plan, reports, expect_change=changed and cid not in dirty)
                if outcome is True:
                    result.written += 1
                elif outcome is None:
                    result.failed.append(cid)
                    self._retry_soon(cid, self.config.sync.retry_interval)
        # Logged after all the writes: with many dependents of one target, the last file
        # must not wait for the log lines of all the others.
        for report in reports:
            report()
        for plan in plans.values():
            self._report_links(plan)
        return result

    def _note_own_entries(self, stopped: set[str]) -> None:
        for gone in self._own_when_stopped.keys() - stopped:
            del self._own_when_stopped[gone]
        for cid in stopped - self._own_when_stopped.keys():
            try:
                content = self.writer.read(cid)
            except HostsFileError:
                continue
            # An empty file may be a rewrite by Docker caught halfway: no baseline then.
            if content:
                self._own_when_stopped[cid] = own_addresses(content, cid[:12])

    def _publish(self, snapshot: Snapshot) -> None:
        assert self.publisher is not None
        if snapshot is self._published_from:
            return  # passes on file writes alone see the same snapshot: nothing to re-encode
        self._published_from = snapshot
        cluster = self.config.cluster
        records, problems = published(snapshot, cluster.publish_label, cluster.node,
                                      cluster.advertise_network)
        self.publisher(records)
        for cid in self._unpublishable - problems.keys():
            self.problems.set(f"{cid}/publish", {})
        for cid, message in problems.items():
            container = snapshot.by_id[cid]
            self.problems.set(f"{cid}/publish", {"publish": message},
                              container_name=container.name, container_id=cid)
        self._unpublishable = set(problems)

    def _retry_soon(self, container_id: str, delay: float) -> None:
        self._dirty.add(container_id)
        self._retry_soon_only(self.clock() + delay)

    def _retry_soon_only(self, due: float) -> None:
        self.retry_due = due if self.retry_due is None else min(self.retry_due, due)

    def _write(
        self, plan: DependentPlan, reports: list[Callable[[], None]], expect_change: bool
    ) -> bool | None:
        """True if written, False if already right (or not there), None if it failed.
        What is to be logged about it is appended to `reports`."""
        dep = plan.dependent
        fields = {"container_name": dep.name, "container_id": dep.id}
        keep = self.config.links.on_target_stop == "keep"
        limit = self.writer.max_bytes
        overflow: list[int] = []
        try:
            patient = self._races.get(dep.id, 0) < RACE_RETRIES
            result = self.writer.update(dep.id, _transform(plan, keep, limit, overflow),
                                        defer_empty=patient, expect_change=expect_change)
        except HostsFileGone:
            return False  # created but not started, or being removed; its start is a hint
        except HostsFileError as exc:
            self.write_errors += 1
            reason = exc.reason
            reports.append(lambda: self.problems.add(
                f"{dep.id}/file", "write", reason, level="error", **fields))
            return None
        reports.append(lambda: self._report_write(plan, result, overflow, limit))
        if result.raced:
            # Docker (or someone) was rewriting the file at the same moment: look again
            # shortly rather than build on a half-written file.
            self._races[dep.id] = self._races.get(dep.id, 0) + 1
            self._retry_soon(dep.id, RACE_RETRY)
        else:
            self._races.pop(dep.id, None)
            self._applied[dep.id] = plan.links
        if not result.changed:
            return False
        self.writes += 1
        return True

    def _report_write(
        self, plan: DependentPlan, result: WriteResult, overflow: list[int], limit: int
    ) -> None:
        dep = plan.dependent
        fields = {"container_name": dep.name, "container_id": dep.id}
        self.problems.clear(f"{dep.id}/file", "write", **fields)
        if overflow:
            self.problems.add(
                f"{dep.id}/file", "size",
                f"hosts file would grow to {overflow[-1]} bytes with the block, over "
                f"max_hosts_bytes ({limit}); block left out", level="error", **fields,
            )
        else:
            self.problems.clear(f"{dep.id}/file", "size", **fields)
        if _untidy(result.before):
            self.problems.add(f"{dep.id}/file", "content",
                              "hosts file holds NUL bytes or invalid UTF-8; handled as bytes",
                              **fields)
        if result.changed:
            added, removed = _diff(block_lines(result.before), block_lines(result.after))
            self.last_write[dep.id] = LastWrite(time.time(), added, removed)
            self.log.info("hosts file updated", added=added, removed=removed, **fields)

    def _report_links(self, plan: DependentPlan) -> None:
        dep = plan.dependent
        fields = {"container_name": dep.name, "container_id": dep.id}
        found = {f"spec:{err.spec}": str(err) for err in plan.errors}
        routine = {}
        for link in plan.links:
            if link.problem is None:
                continue
            message = f"link {link.spec}: {link.problem.value}"
            if link.targets:
                message += f" ({', '.join(link.targets)})"
            (routine if link.problem in _ROUTINE else found)[f"link:{link.spec}"] = message
        self.problems.set(f"{dep.id}/links", found, **fields)
        self.problems.set(f"{dep.id}/waiting", routine, level="info", **fields)


def _transform(
    plan: DependentPlan, keep: bool, limit: int, overflow: list[int]
) -> Callable[[bytes], bytes]:
    """The file's new content from its current one; a size past `limit` goes to overflow."""

    def transform(before: bytes) -> bytes:
        after = merge(before, render_block(plan.lines(keep, block_lines(before))))
        if len(after) <= limit:
            return after
        # The block does not fit under the read limit: a file we wrote past it could
        # never be read back to update, and its lines would go stale. No block at all.
        overflow.append(len(after))
        return strip_block(before)

    return transform


def _untidy(content: bytes) -> bool:
    if b"\0" in content:
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _diff(before: list[bytes], after: list[bytes]) -> tuple[list[str], list[str]]:
    old, new = set(before), set(after)
    def text(lines: list[bytes], other: set[bytes]) -> list[str]:
        return [ln.decode("ascii", "replace") for ln in lines if ln not in other]
    return text(after, old), text(before, new)
