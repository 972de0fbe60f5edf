"""The daemon's state file, which `hostsyncd status` reads.

It lives under /run/hostsyncd, not in a bind mount, so it is replaced atomically: a reader
never sees half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hostsyncd.core.graph import DependentPlan
from hostsyncd.reconcile import LastWrite


def dependent_view(plan: DependentPlan, last: LastWrite | None) -> dict[str, Any]:
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
        "invalid": [str(err) for err in plan.errors],
        "last_write": None if last is None else {
            "at": last.at, "added": last.added, "removed": last.removed,
        },
    }


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
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
