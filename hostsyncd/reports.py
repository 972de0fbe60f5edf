"""Say what the worker found, once: the reasons the core returned for a decision, and what
each write came to. The core decides and returns its reasons; this module only words them
for the problem log (each said once, until it changes) and keeps each file's last write
for `status`.

Every field it logs or keeps carries only lines hostsyncd rendered, cut at MAX_FIELD_BYTES
(core/hostsblock.py), plus counts: the file is the container's, and nothing it writes is
copied into logs, the state file or memory.

Imports: core, fastpath, problems, state, writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from hostsyncd.core.graph import FilePlan, Snapshot
from hostsyncd.core.hostsblock import changes, untidy
from hostsyncd.core.reconcile import Result
from hostsyncd.core.workqueue import Retry
from hostsyncd.fastpath import ForgedEntry
from hostsyncd.problems import ProblemLog
from hostsyncd.state import LastWrite
from hostsyncd.writer import WriteResult

# Per-container subjects of the problem log, all forgotten when the container goes.
_SUBJECTS = ("links", "file", "waiting", "fight", "forged", "publish", "conflict")


class Reports:
    def __init__(self, problems: ProblemLog, log: Any) -> None:
        self.problems = problems
        self.log = log
        # Each file's last write, for `status`: rendered lines only (see LastWrite).
        self.last_write: dict[str, LastWrite] = {}
        # The files whose conflicts were said, so that a conflict gone is said gone.
        self._conflicted: set[str] = set()
        # The containers whose publish label was said to be unpublishable, likewise.
        self._unpublishable: set[str] = set()

    def decided(self, decided: Result) -> None:
        """The core's reasons for the dependents it planned again: each said once, until
        it changes."""
        replanned = decided.plans.keys() if decided.replanned is None else decided.replanned
        for cid in replanned:
            found = decided.plans.get(cid)
            if found is None:
                continue  # stopped: what was said stands until it is removed
            dep = found.dependent
            fields = {"container_name": dep.name, "container_id": dep.id}
            said = {f"spec:{err.spec}": str(err) for err in found.errors}
            if found.health_error is not None:
                said["health"] = found.health_error
            if found.domain_error is not None:
                said["domain"] = found.domain_error
            routine = {}
            for skip in decided.skipped.get(cid, ()):
                (routine if skip.routine else said)[f"link:{skip.spec}"] = skip.message
            if cid in decided.unmanaged:
                # Said once, by name: a write there would change nothing the container sees.
                said["unmanaged"] = decided.unmanaged[cid]
            self.problems.set(f"{cid}/links", said, **fields)
            self.problems.set(f"{cid}/waiting", routine, level="info", **fields)
        by_file: dict[str, dict[str, str]] = {}
        for conflict in decided.conflicts:
            by_file.setdefault(conflict.file, {})[conflict.alias] = (
                f"{', '.join(conflict.dependents)} share this hosts file and give "
                f"{conflict.alias} different addresses ({', '.join(conflict.addresses)}); "
                f"a resolver takes the first")
        for fid in self._conflicted | by_file.keys():
            found = decided.files.get(fid)
            fields = file_fields(found) if found is not None else {"container_id": fid}
            self.problems.set(f"{fid}/conflict", by_file.get(fid, {}), **fields)
        self._conflicted = set(by_file)

    def written(self, plan: FilePlan, result: WriteResult, overflow: list[int],
                max_bytes: int) -> None:
        """A write (or a look that found the file right): what it changed, and whether the
        file's problems still hold."""
        fid = plan.owner
        fields = file_fields(plan)
        self.problems.clear(f"{fid}/file", "write", **fields)
        if overflow:
            self.problems.add(
                f"{fid}/file", "size",
                f"hosts file would grow to {overflow[-1]} bytes with the block, over "
                f"max_hosts_bytes ({max_bytes}); block left out", level="error", **fields,
            )
        else:
            self.problems.clear(f"{fid}/file", "size", **fields)
        if untidy(result.before):
            self.problems.add(f"{fid}/file", "content",
                              "hosts file holds NUL bytes or invalid UTF-8; handled as bytes",
                              **fields)
        if result.changed:
            added, removed, foreign = changes(plan.aliases, result.before, result.after)
            self.last_write[fid] = LastWrite(time.time(), added, removed, foreign)
            extra = {"foreign_removed": foreign} if foreign else {}
            self.log.info("hosts file updated", added=added, removed=removed, **extra,
                          **fields)

    def write_failed(self, plan: FilePlan, reason: str) -> None:
        self.problems.add(f"{plan.owner}/file", "write", reason, level="error",
                          **file_fields(plan))

    def fight(self, plan: FilePlan) -> None:
        self.problems.add(
            f"{plan.owner}/fight", "fight",
            f"container keeps rewriting its hosts file; its block is put back at most "
            f"every {Retry.FIGHT.ceiling:g} s from now on, and its writes are not watched",
            **file_fields(plan))

    def calmed(self, plan: FilePlan) -> None:
        self.problems.clear(f"{plan.owner}/fight", "fight", **file_fields(plan))

    def unpublishable(self, snapshot: Snapshot, problems: Mapping[str, str]) -> None:
        """Why labelled containers are not published to the cluster (by id), as
        `Cluster.publish_from` found it."""
        for cid in self._unpublishable - problems.keys():
            self.problems.set(f"{cid}/publish", {})
        for cid, message in problems.items():
            self.problems.set(f"{cid}/publish", {"publish": message},
                              container_name=snapshot.by_id[cid].name, container_id=cid)
        self._unpublishable = set(problems)

    def forged(self, found: ForgedEntry) -> None:
        self.problems.add(
            f"{found.target_id}/forged", "entry",
            "forged entry in a stopped target's hosts file; not used (addresses come "
            "from the engine only)",
            container_name=found.name, container_id=found.target_id, address=found.address,
            shared_with=list(found.shared_with),
        )

    def held(self) -> set[str]:
        """The containers something is said or kept about."""
        return self.last_write.keys() | self.problems.subjects()

    def forget(self, gone: Iterable[str]) -> None:
        """Drop what was said and kept about these removed containers. Only a removal
        forgets: a restart must not repeat the same warnings."""
        for cid in gone:
            self.last_write.pop(cid, None)
            for kind in _SUBJECTS:
                self.problems.forget(f"{cid}/{kind}")


def file_fields(plan: FilePlan) -> dict[str, Any]:
    """Who a file's log lines are about: its owner, and the sidecars that read it too."""
    fields: dict[str, Any] = {"container_name": plan.owner_name, "container_id": plan.owner}
    sharers = [p.dependent.name for p in plan.plans if p.dependent.id != plan.owner]
    if sharers:
        fields["shared_with"] = sharers
    return fields
