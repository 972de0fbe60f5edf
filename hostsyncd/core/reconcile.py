"""The decider: from a snapshot and the blocks the files hold, what each file should hold,
which files to write, and why links give no line.

Pure: no I/O, no clock, no logging. Reasons are returned (typed, as `Problem`), not logged,
so the daemon's log, `status`, `graph` and the tests all read the same ones. Modelled on
docker-hoster-injector's `Reconcile(containers) -> Result{Entries, Skipped, Conflicts}`.

Imports: core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from hostsyncd.core.graph import (
    DependentPlan,
    FilePlan,
    Problem,
    Snapshot,
    files_of,
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
class Result:
    """What one reconcile decided. Everything is keyed by container id."""

    plans: Mapping[str, DependentPlan]  # every live dependent
    files: Mapping[str, FilePlan]  # every hosts file to manage, by its owner
    blocks: Mapping[str, bytes]  # the block each file should hold
    writes: tuple[str, ...]  # files whose block differs from what they hold now
    skipped: Mapping[str, tuple[Skip, ...]]  # per dependent, the links with no line
    unmanaged: Mapping[str, str]  # dependents whose file is not written, and why
    conflicts: tuple[Conflict, ...]
    # Stopped targets that links wait for, with the dependents waiting: the fast path's.
    waiting: Mapping[str, list[DependentPlan]]
    kept: Mapping[str, Kept]  # keep mode's memory after this reconcile


def reconcile(
    snapshot: Snapshot,
    current: Mapping[str, bytes],
    label: str,
    keep: bool = False,
    kept: Mapping[str, Kept] | None = None,
    health: str = "ignore",
) -> Result:
    """Plan every live dependent of the snapshot. `current`: the block each file holds now
    (as last written or verified); a file missing from it, or holding another block, is
    among `writes`. `keep`: `links.on_target_stop = "keep"`, with `kept` its memory.
    `health`: `links.health`."""
    plans = plan_all(snapshot, label, health=health)
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
    return Result(
        plans=plans,
        files=files,
        blocks=blocks,
        writes=tuple(fid for fid, block in blocks.items() if current.get(fid) != block),
        skipped={cid: skips for cid, found in plans.items() if (skips := skipped(found))},
        unmanaged={cid: found.unmanaged for cid, found in plans.items()
                   if found.unmanaged is not None},
        conflicts=tuple(c for found in files.values() for c in conflicts(found)),
        waiting=waiting_dependents(snapshot, managed),
        kept=new_kept,
    )


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


def transform(block: bytes, limit: int, overflow: list[int]) -> Callable[[bytes], bytes]:
    """The new content of a file from its current one, for the writer. A block that would
    take the file past `limit` is left out (its size goes to `overflow`): a file written
    past the read limit could never be read back to update, and its lines would go stale."""

    def apply(before: bytes) -> bytes:
        after = merge(before, block)
        if len(after) <= limit:
            return after
        overflow.append(len(after))
        return strip_block(before)

    return apply

