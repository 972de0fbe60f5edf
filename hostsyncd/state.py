"""The daemon's state file, which `hostsyncd status` reads.

It lives under /run/hostsyncd, not in a bind mount, so it is replaced atomically: a reader
never sees half of it.

`hostsyncd status` works for any user, including one who may not read the config: the file
is 0644 and a directory made for it 0755, whatever the daemon's umask (the unit's is 0077).
That is safe because it holds no secret: names, addresses, counts, and URLs that the config
forbids to carry a password (config.py); etcd credentials never get here.

Imports: core.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostsyncd.core.graph import DependentPlan
from hostsyncd.core.links import is_host_name
from hostsyncd.core.model import HostLine


@dataclass(slots=True)
class LastWrite:
    """A dependent's last write, as status shows it: only lines hostsyncd rendered (cut to
    a few KiB), and a count of the other lines it removed from the block."""

    at: float
    added: list[str]
    removed: list[str]
    foreign_removed: int = 0


def dependent_view(plan: DependentPlan, last: LastWrite | None,
                   sharers: Sequence[str] = ()) -> dict[str, Any]:
    """`sharers`: the other dependents that read the same hosts file."""
    dep = plan.dependent
    return {
        "id": dep.id,
        "name": dep.name,
        "state": dep.state,
        "links": [
            {
                "spec": str(link.spec),
                "alias": link.spec.alias,
                "targets": list(link.targets),
                "network": link.network,
                "addresses": [line.ip for line in link.lines],
                "problem": link.problem.value if link.problem else None,
            }
            for link in plan.links
        ],
        "invalid": [str(err) for err in plan.errors]
                   + ([plan.health_error] if plan.health_error else []),
        "health": "wait" if plan.health_wait else "ignore",
        "unmanaged": plan.unmanaged,
        "hosts_file": {"of": plan.hosts_file_owner or dep.name, "shared_with": list(sharers)},
        "last_write": None if last is None else {
            "at": last.at, "added": last.added, "removed": last.removed,
            "foreign_removed": last.foreign_removed,
        },
    }


def kept_view(kept: dict[str, dict[str, tuple[HostLine, ...]]]) -> dict[str, Any]:
    """Keep mode's memory, for the next daemon to start from (see `kept_from`)."""
    return {
        cid: {alias: [line.render() for line in lines] for alias, lines in by_alias.items()}
        for cid, by_alias in kept.items() if by_alias
    }


def kept_from(data: dict[str, Any]) -> dict[str, dict[str, tuple[HostLine, ...]]]:
    """Keep mode's memory from an earlier daemon's state file: the engine's word, as that
    daemon wrote it. Checked all the same; whatever is not a plain line is dropped."""
    out: dict[str, dict[str, tuple[HostLine, ...]]] = {}
    raw = data.get("kept")
    if not isinstance(raw, dict):
        return out
    for cid, by_alias in raw.items():
        if not isinstance(cid, str) or len(cid) != 64 or not isinstance(by_alias, dict):
            continue
        for alias, lines in by_alias.items():
            parsed = [_host_line(text) for text in lines] if isinstance(lines, list) else []
            if is_host_name(str(alias)) and parsed and all(parsed):
                out.setdefault(cid, {})[str(alias)] = tuple(p for p in parsed if p)
    return out


def _host_line(text: object) -> HostLine | None:
    if not isinstance(text, str):
        return None
    ip, _, names = text.partition("\t")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    split = tuple(names.split(" "))
    if "%" in ip or not all(is_host_name(n) for n in split):
        return None
    return HostLine(str(address), split)


def sharers(plans: Sequence[DependentPlan]) -> dict[str, list[str]]:
    """For each dependent (by id), the other dependents that read the same hosts file."""
    by_file: dict[str, list[str]] = {}
    for plan in plans:
        if plan.unmanaged is None:
            by_file.setdefault(plan.hosts_file, []).append(plan.dependent.name)
    return {plan.dependent.id: sorted(n for n in by_file.get(plan.hosts_file, ())
                                      if n != plan.dependent.name)
            for plan in plans}


def _make_dirs(directory: Path) -> None:
    """Create `directory` and missing parents, each 0755 (readable by all, see above). An
    existing directory keeps the mode its owner gave it."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
        os.chmod(directory, 0o755)


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            # Compact, through json.dumps: only its one-shot encoder is the C one (json.dump
            # and any indent take the pure-Python path, 10x slower with a large cluster's
            # record names in the state). `status --json` indents it for people.
            out.write(json.dumps(data, sort_keys=True, separators=(",", ":")))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def summary_line(data: dict[str, Any]) -> str:
    """The one-line STATUS= text: '14 dependents, 31 links, engine connected'."""
    engine = data["engine"]
    if engine["connected"]:
        link = "engine connected"
    elif engine["since"]:
        since = time.strftime("%H:%M:%S", time.localtime(engine["since"]))
        link = f"engine unreachable since {since}, retrying"
    else:
        link = "connecting to engine"
    counts = data["counts"]
    parts = [f"{counts['dependents']} dependents", f"{counts['links']} links"]
    if counts["unresolved"]:
        parts.append(f"{counts['unresolved']} unresolved")
    parts.append(link)
    cluster = data.get("cluster") or {}
    if cluster.get("enabled"):
        if cluster.get("conflict"):
            parts.append(f"NOT PUBLISHING: node name {cluster['node']} held by another daemon")
        if cluster["connected"]:
            nodes = len(cluster["remote"])
            parts.append(f"cluster ok ({nodes} other node{'s' if nodes != 1 else ''})")
        else:
            since = time.strftime("%H:%M:%S", time.localtime(cluster["since"]))
            parts.append(f"cluster degraded since {since}")
    return ", ".join(parts)
