"""What `hostsyncd graph` and `hostsyncd status` print. Pure formatting, no I/O.

Imports: core, state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from hostsyncd.core.graph import DependentPlan
from hostsyncd.state import dependent_view, sharers


def _file_note(name: str, of: str, shared_with: Iterable[str]) -> str:
    """Whose hosts file a dependent reads, when it is not simply its own."""
    others = ", ".join(shared_with)
    if of != name:
        return f", reads {of}'s hosts file" + (f" with {others}" if others else "")
    return f", hosts file shared with {others}" if others else ""


def graph_text(plans: Iterable[DependentPlan]) -> str:
    out = []
    plans = list(plans)
    shared = sharers(plans)
    for plan in sorted(plans, key=lambda p: p.dependent.name):
        dep = plan.dependent
        note = _file_note(dep.name, plan.hosts_file_owner or dep.name, shared[dep.id])
        out.append(f"{dep.name} ({dep.state})"
                   + (f": {plan.unmanaged}" if plan.unmanaged else note))
        for link in plan.links:
            if link.problem is None:
                where = f"{link.network} " if link.network else ""
                targets = ", ".join(link.targets)
                addresses = " ".join(line.ip for line in link.lines)
                out.append(f"  -> {link.spec}  =>  {targets}  via {where}{addresses}")
            else:
                out.append(f"  !! {link.spec}  unresolved: {link.problem.value}")
        out += [f"  xx {err}" for err in plan.errors]
        if plan.health_error:
            out.append(f"  xx {plan.health_error}")
    return "\n".join(out) + ("\n" if out else "(no dependents)\n")


def graph_dot(plans: Iterable[DependentPlan]) -> str:
    lines = ["digraph hostsyncd {", "  rankdir=LR;", "  node [shape=box];"]
    for plan in sorted(plans, key=lambda p: p.dependent.name):
        dep = _quote(plan.dependent.name)
        lines.append(f"  {dep};")
        for link in plan.links:
            if link.problem is None:
                label = _quote(f"{link.spec.alias}\n{link.network} "
                               + " ".join(line.ip for line in link.lines))
                lines += [f"  {dep} -> {_quote(t)} [label={label}];" for t in link.targets]
            else:
                label = _quote(f"{link.spec.alias}\n{link.problem.value}")
                lines.append(f"  {dep} -> {_quote(link.spec.target)} "
                             f"[label={label}, style=dashed, color=red];")
        for i, err in enumerate(plan.errors):
            node = _quote(f"{plan.dependent.name}/invalid/{i}")
            lines.append(f"  {node} [label={_quote(str(err))}, shape=note, color=red];")
            lines.append(f"  {dep} -> {node} [style=dotted, color=red];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_json(plans: Iterable[DependentPlan]) -> str:
    plans = list(plans)
    shared = sharers(plans)
    views = [dependent_view(p, None, shared[p.dependent.id])
             for p in sorted(plans, key=lambda p: p.dependent.name)]
    for view in views:
        view.pop("last_write")
    return json.dumps({"dependents": views}, indent=1) + "\n"


def _quote(text: str) -> str:
    """A DOT string literal. Spec errors quote untrusted label text, so anything that is
    not printable ASCII becomes '?'."""
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char if char.isascii() and char.isprintable() else "?")
    return '"' + "".join(out) + '"'


def _cluster_lines(cluster: dict[str, Any], when: Callable[[float], str]) -> list[str]:
    if not cluster.get("enabled"):
        return []
    head = f"cluster:    node {cluster['node']}, "
    if cluster["connected"]:
        head += f"connected to {cluster['endpoint']} since {when(cluster['since'])}"
    else:
        head += f"DEGRADED since {when(cluster['since'])}: {cluster['reason']}"
    remote = cluster["remote"]
    kept = " (last known, kept)" if not cluster["connected"] else ""
    ignored = cluster.get("ignored") or {}
    over = ", ".join(f"{node} ({n})" for node, n in (ignored.get("over_cap") or {}).items())
    return [
        head,
        *([f"            NOT PUBLISHING: {cluster['conflict']}"] if cluster.get("conflict")
          else []),
        f"            publishes {len(cluster['published'])}: "
        + (", ".join(cluster["published"]) or "-"),
        *(f"            node {node}{kept}: {', '.join(names)}" for node, names in remote.items()),
        *([f"            ignored: {ignored.get('rejected', 0)} invalid records"
           + (f"; over max_records_per_node: {over}" if over else "")]
          if ignored.get("rejected") or over else []),
    ]


def status_text(data: dict[str, Any]) -> str:
    def when(ts: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"

    engine = data["engine"]
    counts = data["counts"]
    out = [
        f"hostsyncd pid {data['pid']}, up since {when(data['started'])}, "
        f"state as of {when(data['updated'])}",
        f"engine:     {engine['url']} "
        + (f"connected (Docker {engine['version']}) since {when(engine['since'])}"
           if engine["connected"]
           else f"UNREACHABLE since {when(engine['since'])}: {engine['reason']}"),
        f"counts:     {counts['dependents']} dependents, {counts['links']} links, "
        f"{counts['unresolved']} unresolved, {counts['invalid_specs']} invalid specs, "
        f"{counts['writes']} writes, {counts['write_errors']} write errors",
        *_cluster_lines(data.get("cluster") or {}, when),
        "",
    ]
    for dep in data["dependents"]:
        last = dep["last_write"]
        written = "never written" if last is None else (
            f"last write {when(last['at'])}: +{len(last['added'])} -{len(last['removed'])}")
        if last is not None and last.get("foreign_removed"):
            written += f" (and {last['foreign_removed']} lines not ours removed)"
        if dep.get("unmanaged"):
            written = dep["unmanaged"]
        elif dep.get("hosts_file"):
            written += _file_note(dep["name"], dep["hosts_file"]["of"],
                                  dep["hosts_file"]["shared_with"])
        out.append(f"{dep['name']} ({dep['id'][:12]}, {dep['state']}), {written}")
        for link in dep["links"]:
            if link["problem"]:
                out.append(f"  !! {link['spec']}: {link['problem']}")
            else:
                out.append(f"  -> {link['spec']}: {', '.join(link['targets'])} "
                           f"{link['network']} {' '.join(link['addresses'])}")
        out += [f"  xx {err}" for err in dep["invalid"]]
    if data["recent_errors"]:
        out += ["", "recent problems:"]
        for err in data["recent_errors"]:
            who = f" [{err['container']}]" if err.get("container") else ""
            out.append(f"  {when(err['at'])} {err['level']}{who}: {err['message']}")
    return "\n".join(out) + "\n"
