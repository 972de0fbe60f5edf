"""The decider: from a snapshot and the blocks the files hold, what each file should hold,
which files to write, and why links give no line.

Incremental: given the previous Result, only the dependents that a change can touch are
planned again. An `Index` says who those are: the dependents that name a container (by
name or compose service, or the name of another node's record), and the containers that
share its network namespace. No previous Result, or a change of other nodes' records whose
names are not given, plans everything (the resync's full pass).

Pure: no I/O, no clock, no logging. Reasons are returned (typed, as `Problem`), not logged,
so the daemon's log, `status`, `graph` and the tests all read the same ones. Modelled on
docker-hoster-injector's `Reconcile(containers) -> Result{Entries, Skipped, Conflicts}`.

Imports: core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from hostsyncd.core.graph import (
    DependentPlan,
    FilePlan,
    Problem,
    Snapshot,
    file_plan,
    files_of,
    plan,
    plan_all,
    waiting_dependents,
)
from hostsyncd.core.hostsblock import merge, render_block, strip_block
from hostsyncd.core.model import HostLine

# Keep mode's memory: per dependent, per alias, the lines the engine last gave.
Kept = dict[str, tuple[HostLine, ...]]

# Reasons that are routine while containers come and go: a target stopped, was removed,
# is being recreated. Said at info, not as warnings.
# Waiting for a target's health is routine too: every start of a target with a
# healthcheck goes through it.
ROUTINE = frozenset({Problem.MISSING, Problem.NOT_RUNNING, Problem.NOT_PUBLISHED,
                     Problem.DETACHED, Problem.WAITING_HEALTH})


class Skip(NamedTuple):
    """A link that gives no line, and why."""

    dependent: str  # container id
    spec: str  # as the label wrote it
    reason: Problem
    # For an ambiguous link, the candidates (node/name).
    candidates: tuple[str, ...] = ()

    @property
    def routine(self) -> bool:
        return self.reason in ROUTINE

    @property
    def message(self) -> str:
        text = f"link {self.spec}: {self.reason.value}"
        return f"{text} ({', '.join(self.candidates)})" if self.candidates else text


class Conflict(NamedTuple):
    """Dependents that read one hosts file give one alias different addresses: a resolver
    takes the first line, so the file says two things. Both are written, and said."""

    file: str  # the owner's container id
    alias: str
    dependents: tuple[str, ...]  # names
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    """Who a change to one container can touch. Built by a full pass, updated by each
    incremental one; never changed in place once a Result holds it."""

    # A link's target as written (a container name or a compose service) -> the live
    # dependents whose links name it.
    refs: Mapping[str, frozenset[str]]
    # `container:<ref>` -> the ids of the containers that join that network namespace.
    joined: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Result:
    """What one reconcile decided. Everything is keyed by container id."""

    plans: Mapping[str, DependentPlan]  # every live dependent
    files: Mapping[str, FilePlan]  # every hosts file to manage, by its owner
    blocks: Mapping[str, bytes]  # the block each file should hold
    # Files whose block differs from what they hold now: all of them after a full pass,
    # those of the dependents planned again after an incremental one.
    writes: tuple[str, ...]
    skipped: Mapping[str, tuple[Skip, ...]]  # per dependent, the links with no line
    unmanaged: Mapping[str, str]  # dependents whose file is not written, and why
    conflicts: tuple[Conflict, ...]
    # Stopped targets that links wait for, with the dependents waiting: the fast path's.
    waiting: Mapping[str, list[DependentPlan]]
    kept: Mapping[str, Kept]  # keep mode's memory after this reconcile
    # What the next reconcile starts from: the snapshot planned, who a change touches.
    snapshot: Snapshot | None = None
    index: Index | None = None
    # The dependents planned by this reconcile; None: all of them (a full pass).
    replanned: frozenset[str] | None = None
    by_file: Mapping[str, tuple[Conflict, ...]] | None = None  # conflicts, per file


def reconcile(
    snapshot: Snapshot,
    current: Mapping[str, bytes],
    label: str,
    keep: bool = False,
    kept: Mapping[str, Kept] | None = None,
    health: str = "ignore",
    previous: Result | None = None,
    changed: Iterable[str] | None = None,
    domain: str = "",
    remote_changed: Iterable[str] | None = None,
) -> Result:
    """Plan the live dependents of the snapshot. `current`: the block each file holds now
    (as last written or verified); a file missing from it, or holding another block, is
    among `writes`. `keep`: `links.on_target_stop = "keep"`, with `kept` its memory.
    `health`: `links.health`; `domain`: `links.domain`.
    `previous`: the last Result, made with the same label, keep and health; with it, only the
    dependents the snapshot's changes touch are planned again. `changed`: the ids of the
    containers that changed since `previous.snapshot`, as the observed state knows them;
    without it they are found by comparing the two snapshots (O(fleet)). `remote_changed`:
    the names whose records on other nodes changed since then; without it, a change of
    other nodes' records plans everything."""
    if previous is None or previous.snapshot is None or previous.index is None:
        return _full(snapshot, current, label, keep, kept, health, domain)
    names: frozenset[str] = frozenset()
    if not _same_records(previous.snapshot, snapshot):
        if remote_changed is None or not _same_cluster(previous.snapshot, snapshot):
            return _full(snapshot, current, label, keep, kept, health, domain)
        names = frozenset(remote_changed)
    ids = changed_ids(previous.snapshot, snapshot, bool(names)) if changed is None \
        else frozenset(changed)
    if ids is None:
        return _full(snapshot, current, label, keep, kept, health, domain)
    if not ids and not names:
        return replace(previous, snapshot=snapshot, writes=(), replanned=frozenset())
    return _incremental(previous, snapshot, ids, names, current, label, keep, kept, health,
                        domain)


def _full(snapshot: Snapshot, current: Mapping[str, bytes], label: str, keep: bool,
          kept: Mapping[str, Kept] | None, health: str, domain: str) -> Result:
    plans = plan_all(snapshot, label, health=health, domain=domain)
    files = files_of(snapshot, plans.values())
    new_kept: dict[str, Kept] = {}
    if keep:
        # A dependent that is not live keeps its memory until it is removed: its restart
        # starts from it.
        new_kept = {cid: lines for cid, lines in (kept or {}).items() if cid in snapshot.by_id}
        for cid, found in plans.items():
            new_kept[cid] = found.kept_lines(new_kept.get(cid))
    blocks = {fid: file_block(found, keep, new_kept) for fid, found in files.items()}
    managed = [found for found in plans.values() if found.unmanaged is None]
    by_file = {fid: found_conflicts for fid, found in files.items()
               if (found_conflicts := tuple(conflicts(found)))}
    refs: dict[str, set[str]] = {}
    for cid, found in plans.items():
        for target in _targets_named(found):
            refs.setdefault(target, set()).add(cid)
    joined: dict[str, set[str]] = {}
    for container in snapshot:
        if container.network_mode.startswith("container:"):
            joined.setdefault(container.network_mode[10:], set()).add(container.id)
    return Result(
        plans=plans,
        files=files,
        blocks=blocks,
        writes=tuple(fid for fid, block in blocks.items() if current.get(fid) != block),
        skipped={cid: skips for cid, found in plans.items() if (skips := skipped(found))},
        unmanaged={cid: found.unmanaged for cid, found in plans.items()
                   if found.unmanaged is not None},
        conflicts=tuple(c for found in by_file.values() for c in found),
        waiting=waiting_dependents(snapshot, managed),
        kept=new_kept,
        snapshot=snapshot,
        index=Index({k: frozenset(v) for k, v in refs.items()},
                    {k: frozenset(v) for k, v in joined.items()}),
        replanned=None,
        by_file=by_file,
    )


def _incremental(previous: Result, snapshot: Snapshot, changed: frozenset[str],
                 names: frozenset[str], current: Mapping[str, bytes], label: str, keep: bool,
                 kept: Mapping[str, Kept] | None, health: str, domain: str) -> Result:
    """Plan the touched dependents again; copy the rest. Maps are copied only when one of
    their entries changes, and entries are replaced in place: a dict with holes left by
    pops takes the slow path when the next event copies it."""
    before = previous.snapshot
    assert before is not None and previous.index is not None and previous.by_file is not None
    index = _reindexed_joined(previous.index, before, snapshot, changed)
    dirty = touched(index, before, snapshot, changed, label)
    for name in names:  # every link naming a remote record resolves by its name
        dirty.update(index.refs.get(name, ()))
    plans = dict(previous.plans)
    refs = _Changes(index.refs)
    files_hit: set[str] = set()
    for cid in dirty:
        old = plans.get(cid)
        container = snapshot.by_id.get(cid)
        new = plan(snapshot, container, label, health, domain) \
            if container is not None and container.is_live else None
        if new is not None:
            plans[cid] = new
        elif old is not None:
            del plans[cid]
        for found in (old, new):
            if found is not None and found.unmanaged is None:
                files_hit.add(found.hosts_file)
        _move_refs(refs, cid, old, new)
    new_kept: dict[str, Kept] = {}
    if keep:
        new_kept = dict(kept or {})
        for cid in changed:
            if cid not in snapshot.by_id:
                new_kept.pop(cid, None)
        for cid in dirty:
            if cid in plans:
                new_kept[cid] = plans[cid].kept_lines(new_kept.get(cid))
    files = dict(previous.files)
    blocks = dict(previous.blocks)
    by_file = _Changes(previous.by_file)
    for fid in files_hit:
        group = [p for p in (files[fid].plans if fid in files else ())
                 if p.dependent.id not in dirty]
        group += [found for cid in dirty if (found := plans.get(cid)) is not None
                  and found.unmanaged is None and found.hosts_file == fid]
        if group:
            files[fid] = found_file = file_plan(snapshot, fid, group)
            blocks[fid] = file_block(found_file, keep, new_kept)
            by_file.put(fid, tuple(conflicts(found_file)))
        else:
            files.pop(fid, None)
            blocks.pop(fid, None)
            by_file.put(fid, ())
    skips = _Changes(previous.skipped)
    unmanaged = _Changes(previous.unmanaged)
    for cid in dirty:
        found = plans.get(cid)
        skips.put(cid, skipped(found) if found is not None else ())
        unmanaged.put(cid, found.unmanaged if found is not None else None)
    return Result(
        plans=plans,
        files=files,
        blocks=blocks,
        writes=tuple(fid for fid in files_hit
                     if fid in blocks and current.get(fid) != blocks[fid]),
        skipped=skips.result,
        unmanaged=unmanaged.result,
        conflicts=previous.conflicts if by_file.result is previous.by_file
        else tuple(c for found in by_file.result.values() for c in found),
        waiting=_rewaited(previous.waiting, snapshot, dirty,
                          [p for cid in dirty if (p := plans.get(cid)) is not None
                           and p.unmanaged is None]),
        kept=new_kept,
        snapshot=snapshot,
        index=Index(refs.result, index.joined),
        replanned=frozenset(dirty),
        by_file=by_file.result,
    )


class _Changes:
    """A map copied on its first change. `put(key, falsy)` removes the key."""

    def __init__(self, base: Mapping) -> None:
        self.result: Mapping = base
        self._copied = False

    def put(self, key: str, value: object) -> None:
        if self.result.get(key) == value or (not value and key not in self.result):
            return
        if not self._copied:
            self.result, self._copied = dict(self.result), True
        if value:
            self.result[key] = value  # type: ignore[index]
        else:
            del self.result[key]  # type: ignore[attr-defined]


def changed_ids(before: Snapshot, after: Snapshot,
                remote_known: bool = False) -> frozenset[str] | None:
    """The containers that differ between two snapshots; None if what other nodes publish
    (or whether there is a cluster) changed, which can touch any dependent, unless
    `remote_known`: the caller knows which names it changed."""
    if not (_same_cluster(before, after) if remote_known else _same_records(before, after)):
        return None
    if before is after:
        return frozenset()
    old, new = before.by_id, after.by_id
    # Identity first: the observed state hands over the same Container until it changes.
    out = {cid for cid, c in new.items() if (was := old.get(cid)) is not c and was != c}
    out.update(old.keys() - new.keys())
    return frozenset(out)


def touched(index: Index, before: Snapshot, after: Snapshot, changed: Iterable[str],
            label: str) -> set[str]:
    """The dependents whose plan a change to these containers can alter: the changed
    dependents, the dependents naming a changed container (by any name it had or has, or
    its compose service), and the same again for every container that joins a changed
    container's network namespace (its address, and a sidecar's file, are the owner's)."""
    seen = set(changed)
    frontier = set(seen)
    short = [ref for ref in index.joined if 12 <= len(ref) < 64]
    for _ in range(_MAX_NETNS_DEPTH):
        joiners: set[str] = set()
        for cid in frontier:
            for ref in (cid, *_names(before, after, cid)):
                joiners.update(index.joined.get(ref, ()))
            for ref in short:
                if cid.startswith(ref):
                    joiners.update(index.joined[ref])
        frontier = joiners - seen
        if not frontier:
            break
        seen |= frontier
    dirty: set[str] = set()
    for cid in seen:
        for container in (before.by_id.get(cid), after.by_id.get(cid)):
            if container is None:
                continue
            if label in container.labels:
                dirty.add(cid)
            for token in (container.name, container.compose_service):
                if token is not None:
                    dirty.update(index.refs.get(token, ()))
    return dirty


def _same_records(before: Snapshot, after: Snapshot) -> bool:
    return before.remote_source is after.remote_source and _same_cluster(before, after)


def _same_cluster(before: Snapshot, after: Snapshot) -> bool:
    return before.node == after.node and before.bare_names == after.bare_names


# Docker refuses `container:` chains anyway; the core follows at most this many hops.
_MAX_NETNS_DEPTH = 8


def _names(before: Snapshot, after: Snapshot, cid: str) -> list[str]:
    return [c.name for c in (before.by_id.get(cid), after.by_id.get(cid)) if c is not None]


def _targets_named(found: DependentPlan) -> set[str]:
    return {link.spec.target for link in found.links}


def _move_refs(refs: _Changes, cid: str, old: DependentPlan | None,
               new: DependentPlan | None) -> None:
    gone = _targets_named(old) if old is not None else set()
    now = _targets_named(new) if new is not None else set()
    for target in gone - now:
        refs.put(target, refs.result.get(target, frozenset()) - {cid})
    for target in now - gone:
        refs.put(target, refs.result.get(target, frozenset()) | {cid})


def _reindexed_joined(index: Index, before: Snapshot, after: Snapshot,
                      changed: Iterable[str]) -> Index:
    """The index with the changed containers' `container:` joins moved."""
    joined: dict[str, frozenset[str]] | None = None
    for cid in changed:
        modes = [c.network_mode if c is not None else None
                 for c in (before.by_id.get(cid), after.by_id.get(cid))]
        if modes[0] == modes[1]:
            continue
        joined = dict(index.joined) if joined is None else joined
        for position, mode in enumerate(modes):
            if mode is None or not mode.startswith("container:"):
                continue
            ref = mode[10:]
            members = joined.get(ref, frozenset())
            members = members - {cid} if position == 0 else members | {cid}
            if members:
                joined[ref] = members
            else:
                joined.pop(ref, None)
    return index if joined is None else Index(index.refs, joined)


def _rewaited(previous: Mapping[str, list[DependentPlan]], snapshot: Snapshot,
              dirty: set[str], replanned: list[DependentPlan]
              ) -> dict[str, list[DependentPlan]]:
    waiting: dict[str, list[DependentPlan]] = {}
    for target, plans in previous.items():
        if target in snapshot.by_id and not snapshot.by_id[target].has_address:
            kept = [p for p in plans if p.dependent.id not in dirty]
            if kept:
                waiting[target] = kept
    for target, plans in waiting_dependents(snapshot, replanned).items():
        waiting.setdefault(target, []).extend(plans)
    return waiting


def skipped(found: DependentPlan) -> tuple[Skip, ...]:
    dep = found.dependent.id
    return tuple(
        Skip(dep, str(link.spec), link.problem,
             link.targets if link.problem is Problem.AMBIGUOUS else ())
        for link in found.links if link.problem is not None
    )


def conflicts(found: FilePlan) -> list[Conflict]:
    if len(found.plans) < 2:
        return []
    by_alias: dict[str, dict[str, list[str]]] = {}
    for each in found.plans:
        for link in each.links:
            for line in link.lines:
                addresses = by_alias.setdefault(link.spec.alias, {})
                names = addresses.setdefault(line.ip, [])
                if each.dependent.name not in names:
                    names.append(each.dependent.name)
    out = []
    for alias, addresses in sorted(by_alias.items()):
        # One target's IPv4 and IPv6 are one answer, not two: only differing dependents
        # giving differing addresses conflict.
        if len(addresses) > 1 and len({tuple(n) for n in addresses.values()}) > 1:
            names = tuple(dict.fromkeys(n for ns in addresses.values() for n in ns))
            out.append(Conflict(found.owner, alias, names, tuple(sorted(addresses))))
    return out


def file_block(found: FilePlan, keep: bool, kept: Mapping[str, Kept] | None) -> bytes:
    """The block one file should hold: its dependents' lines, each once. In keep mode a
    target that went keeps the engine's last lines for it."""
    return render_block(found.lines(keep, kept))


def transform(
    block: bytes, limit: int, overflow: list[int], earlier: bytes
) -> Callable[[bytes], bytes]:
    """The new content of a file from its current one, for the writer. A block that would
    take the file past `limit` is left out (its size goes to `overflow`): a file written
    past the read limit could never be read back to update, and its lines would go stale.
    `earlier`: the block the file last had from us, which a racing writer may have torn."""

    def apply(before: bytes) -> bytes:
        after = merge(before, block, earlier)
        if len(after) <= limit:
            return after
        overflow.append(len(after))
        return strip_block(before, (block, earlier))

    return apply

