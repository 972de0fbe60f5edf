#!/usr/bin/env python3
"""Run every benchmark; print the table, write bench/results/<timestamp>.json, a plot
<timestamp>.png beside it, and bench/results/latest.md (the table for the README).

    python3 bench/run.py              the full suite (about 20-30 minutes)
    python3 bench/run.py --quick      fewer cycles and sizes: a smoke check (a few minutes)
    python3 bench/run.py --only fanout,footprint
    python3 bench/run.py --engine 26  on Docker 26 (or 28; default 20.10): the engine matrix
                                      of tests/conftest.py, one bench engine per version
    python3 bench/run.py --profile    attach py-spy to every daemon; the top functions of
                                      each profile go into the JSON (perturbs the timings)

Each benchmark runs hostsyncd and Docker's own --link side by side in the same run on the
private bench engine; absolute times on these shared machines are noise, the ratios are the
result. A benchmark that fails is reported as such and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lib
from lib import Bench, hostsyncd, profile_summary

X = "\N{MULTIPLICATION SIGN}"
RESULTS = lib.ROOT / "bench" / "results"
ORDER = ("propagation", "fanout", "first_read", "torn_reads", "resync", "synthetic",
         "event_cost", "footprint", "event_storm", "cross_host", "fifty_nodes", "health")

FULL: dict[str, dict[str, Any]] = {
    "propagation": {"cycles": 20},
    "fanout": {"sizes": (10, 30, 100), "cycles": 7},
    "first_read": {"restarts": 50},
    "torn_reads": {"rewrites": 200},
    "resync": {"sizes": (50, 100, 200), "resyncs": 5},
    "synthetic": {"sizes": (1000, 2000, 5000, 10000), "repeats": 5},
    "event_cost": {"sizes": (1000, 10000), "events": 200},
    "footprint": {"idle": 60.0},
    "event_storm": {"targets": 50, "dependents": 10, "storms": 3},
    "cross_host": {"cycles": 20},
    "fifty_nodes": {"cycles": 40},
    "health": {"cycles": 20},
}
QUICK: dict[str, dict[str, Any]] = {
    "propagation": {"cycles": 5},
    "fanout": {"sizes": (10, 30), "cycles": 2},
    "first_read": {"restarts": 10},
    "torn_reads": {"rewrites": 20},
    "resync": {"sizes": (50,), "resyncs": 2},
    "synthetic": {"sizes": (1000, 2000), "repeats": 2},
    "event_cost": {"sizes": (1000, 10000), "events": 40},
    "footprint": {"idle": 10.0, "no_watchdog": 5.0},
    "event_storm": {"targets": 20, "dependents": 3, "storms": 1},
    "cross_host": {"cycles": 5},
    "fifty_nodes": {"cycles": 10},
    "health": {"cycles": 5},
}


def run_one(name: str, bench: Bench, workdir: Path, params: dict[str, Any]) -> dict[str, Any]:
    import cross_host
    import event_cost
    import event_storm
    import fanout
    import fifty_nodes
    import first_read
    import footprint
    import health
    import propagation
    import resync_cost
    import torn_reads

    def with_daemon(fn: Callable[..., dict[str, Any]], **kw: Any) -> dict[str, Any]:
        with hostsyncd(bench, workdir):
            return fn(bench, **kw)

    if name == "propagation":
        return with_daemon(propagation.measure, **params)
    if name == "first_read":
        return with_daemon(first_read.measure, **params)
    if name == "torn_reads":
        return with_daemon(torn_reads.measure, **params)
    if name == "health":
        return with_daemon(health.measure, **params)
    if name == "fanout":
        return fanout.measure(bench, workdir, **params)
    if name == "resync":
        return resync_cost.measure_real(bench, workdir, **params)
    if name == "synthetic":
        return resync_cost.measure_synthetic(**params)
    if name == "event_cost":
        return event_cost.measure(**params)
    if name == "footprint":
        return footprint.measure(bench, workdir, **params)
    if name == "event_storm":
        return event_storm.measure(bench, workdir, **params)
    if name == "cross_host":
        return cross_host.measure(bench, workdir, **params)
    if name == "fifty_nodes":
        return fifty_nodes.measure(bench, workdir, **params)
    raise ValueError(name)


# -- the table ----------------------------------------------------------------------------

def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**NO**")


def table_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def row(what: str, hsd: str, link: str, figure: str, target: str, ok: bool | None) -> None:
        rows.append({"what": what, "hostsyncd": hsd, "link": link, "figure": figure,
                     "target": target, "met": _met(ok)})

    def failed(name: str, what: str) -> bool:
        res = results.get(name)
        if res is None:
            return True
        if "error" in res:
            row(what, "error", "error", res["error"].splitlines()[-1][:80], "—", False)
            return True
        return False

    if not failed("propagation", "Propagation"):
        r = results["propagation"]
        row(f"Propagation: `docker start` of a target until its dependent's file has the new "
            f"IP, median (p95) of {r['hostsyncd']['n']} cycles",
            f"{_ms(r['hostsyncd']['median'])} ({_ms(r['hostsyncd']['p95'])})",
            f"{_ms(r['link']['median'])} ({_ms(r['link']['p95'])})",
            f"{r['ratio_median']:.2f}{X} (p95 {r['ratio_p95']:.2f}{X})", f"≤ 1.25{X} (aim 1.15{X})",
            r["ratio_median"] <= 1.25)
    if not failed("fanout", "Fan-out"):
        r = results["fanout"]
        for n, data in r["by_n"].items():
            at_target = int(n) == 30
            row(f"Fan-out, N = {n} dependents of each kind: until ALL show the new IP, median "
                f"of {data['hostsyncd']['n']}",
                _ms(data["hostsyncd"]["median"]), _ms(data["link"]["median"]),
                f"{data['ratio_median']:.2f}{X}", f"≤ 1.3{X}" if at_target else "(growth: plot)",
                data["ratio_median"] <= 1.3 if at_target else None)
    if not failed("first_read", "First read"):
        r = results["first_read"]
        row(f"First read: entrypoint's first `cat /etc/hosts` has the link, of {r['restarts']} "
            "restarts", f"{r['hostsyncd_pct']:.0f}%", f"{r['link_pct']:.0f}%",
            f"{r['hostsyncd_hits']}/{r['restarts']}", "≥ 98%", r["hostsyncd_pct"] >= 98)
    if not failed("torn_reads", "Torn reads"):
        r = results["torn_reads"]
        bad_h = r["hostsyncd_empty"] + r["hostsyncd_torn"]
        bad_l = r["link_empty"] + r["link_torn"]
        row(f"Torn reads: empty or partial reads during {r['rewrites']} rewrites "
            f"({r['hostsyncd_reads']:,} / {r['link_reads']:,} reads)",
            f"{bad_h} ({r['hostsyncd_empty']} empty)", f"{bad_l} ({r['link_empty']} empty)",
            f"hostsyncd {bad_h}", "hostsyncd 0", bad_h == 0)
    if not failed("resync", "Resync cost"):
        r = results["resync"]
        for n, data in r["by_n"].items():
            calls = "/".join(str(c) for c in data["api_calls"])
            row(f"Full resync, {n} containers ({data['dependents'][0]} dependents, {n} links): "
                "wall, CPU, engine API calls",
                f"{_ms(data['wall_ms']['median'])}, CPU {_ms(data['cpu_ms']['median'])}, "
                f"{calls} call", "— (no resync)", f"{calls} API call per resync",
                "1 list call, no inspect", data["one_list_call"])
    if not failed("synthetic", "Scale model"):
        r = results["synthetic"]
        per = ", ".join(f"{int(n) // 1000}k: {d['us_per_container']:.1f}"
                        for n, d in r["by_n"].items())
        largest = r["by_n"][str(r["sizes"][-1])]
        row(f"Scale model (pure core): plan_all + render per container, up to "
            f"{largest['containers']:,} containers / {largest['links']:,} links",
            f"µs/container {per}", "—",
            f"fit {r['fit_ms']['slope'] * 1000:.1f} µs/container, R² {r['fit_ms']['r2']:.3f}; "
            f"10k/1k {r['growth']:.2f}{X}",
            "linear, ≤ 20 µs/container", r["linear"] and r["max_us_per_container"] <= 20)
    if not failed("event_cost", "CPU per event"):
        r = results["event_cost"]
        for n, d in r["by_n"].items():
            row(f"CPU per event (a target moves), {int(n):,} containers, "
                f"{d['dependents']:,} dependents with 5 links: connect event; event + list of "
                "its container; event + list of all (Podman, or > 32 in a batch)",
                f"{d['connect_ms']['median']:.2f} ms; {d['asked_ms']['median']:.2f} ms; "
                f"{d['listed_ms']['median']:.2f} ms",
                f"before (whole fleet planned): {d['before_ms']['median']:.1f} ms",
                f"{d['ratio_connect']:.0f}{X}; {d['ratio_asked']:.0f}{X}; "
                f"{d['ratio_listed']:.0f}{X} less",
                "≤ 1 ms at 10k" if int(n) >= 10000 else "—",
                r["event_ok"] if int(n) >= 10000 else None)
            row(f"CPU per event, the whole worker, {int(n):,} containers: event + list of its "
                "container + pass + the dependents' writes + inotify on every managed file",
                f"{d['worker_ms']['median']:.2f} ms (p95 {d['worker_ms']['p95']:.2f} ms)",
                "—", "—", "≤ 1 ms at 10k" if int(n) >= 10000 else "—",
                r["worker_ok"] if int(n) >= 10000 else None)
        per = " / ".join(f"{d['full_us_per_container']:.1f}" for d in r["by_n"].values())
        row("Full pass (resync), µs per container at "
            + " / ".join(f"{int(n) // 1000}k" for n in r["by_n"]) + " (5 links, 20% dependents)",
            per, "—", "best of the sampled passes", "≤ 20 µs", r["pass_ok"])
    if not failed("footprint", "Footprint"):
        r = results["footprint"]
        row(f"Peak RSS (VmHWM), {r['containers']} containers, {r['links']} links",
            f"{r['vm_hwm_mb']:.1f} MB", "— (inside dockerd)", f"{r['vm_hwm_mb']:.1f} MB",
            "≤ 60 MB", r["vm_hwm_mb"] <= 60)
        scaled = "" if r["idle_s"] >= 59 else f" (scaled from {r['idle_s']:.0f} s)"
        row(f"Idle CPU over 60 s, watchdog pings every 1 s ({r['watchdog_pings']} seen)",
            f"{r['idle_cpu_s_per_60s']:.2f} s{scaled}",
            f"dockerd {r['dockerd_idle_cpu_s']} s", f"{r['idle_cpu_s_per_60s']:.2f} s",
            "≤ 0.1 s", r["idle_cpu_s_per_60s"] <= 0.1)
    if not failed("event_storm", "Event storm"):
        r = results["event_storm"]
        h, k = r["hostsyncd"], r["link"]
        row(f"Event storm: {r['targets']} targets restarted at once, "
            f"{r['dependents_per_kind']} dependents of each kind link to all; writes per "
            f"dependent (distinct contents), {r['storms']} storms",
            f"{h['mean_writes']:.1f} ({h['mean_distinct']:.1f} distinct)",
            f"{k['mean_writes']:.1f} ({k['distinct_polled']['median']:.0f} distinct seen)",
            f"{r['over_bound']} dependents over the bound",
            "writes ≤ distinct + 1", r["over_bound"] == 0)
        row("Event storm: until every dependent has every final address, median of storms",
            _ms(h["slowest_converged_ms"]["median"]), _ms(k["slowest_converged_ms"]["median"]),
            f"{r['converge_ratio']:.2f}{X}", "(report)", None)
    if not failed("cross_host", "Cross-host propagation"):
        r = results["cross_host"]
        cross, local, link = r["cross_host"], r["local"], r["link"]
        row(f"Cross-host propagation: `docker start` on host b until a dependent on host a "
            f"has the new IP (through etcd), median (p95) of {cross['n']} cycles; local "
            "hostsyncd on b in the same cycles in the figure",
            f"{_ms(cross['median'])} ({_ms(cross['p95'])})",
            f"{_ms(link['median'])} ({_ms(link['p95'])}) on b",
            f"local {_ms(local['median'])} ({_ms(local['p95'])}); cross/local "
            f"{r['cross_over_local_median']:.2f}{X}", "≤ 1 s", cross["p95"] <= 1000)
    if not failed("fifty_nodes", "Fifty nodes"):
        r = results["fifty_nodes"]
        small, large = r["small"], r["large"]
        lat_s, lat_l = small["latency_ms"], large["latency_ms"]
        row(f"{r['nodes']} nodes ({r['nodes'] - 1} simulated, {r['records']:,} records, "
            f"3-member etcd): a remote record's change until a dependent on the real node "
            f"has it, p50 (p95) of {lat_l['n']}",
            f"{_ms(lat_l['median'])} ({_ms(lat_l['p95'])})", "— (no cross-host links)",
            f"at {small['records']:,} records: {_ms(lat_s['median'])} "
            f"({_ms(lat_s['p95'])})", "≤ 50 ms p95", lat_l["p95"] <= 50)
        row(f"{r['nodes']} nodes: the daemon's RSS (peak) with {r['records']:,} remote "
            "records", f"{r['rss_mb']:.1f} MB ({r['hwm_mb']:.1f} MB)", "—",
            f"{r['rss_mb']:.1f} MB", "≤ 100 MB", r["hwm_mb"] <= 100)
        row("CPU per remote change (less idle), at "
            f"{small['records']:,} and {large['records']:,} records",
            f"{small['cpu_ms_per_change']:.1f} ms, {large['cpu_ms_per_change']:.1f} ms", "—",
            f"growth {r['cpu_growth']:.1f}{X} for {large['records'] / small['records']:.0f}"
            f"{X} the records", "does not grow with the count", r["cpu_growth"] <= 1.3)
        row(f"{r['nodes']} nodes: a whole simulated node ({r['records'] // (r['nodes'] - 1)} "
            "records) expires: its last keep-alive until the real node's dependent lost "
            "its lines", f"{r['expiry_s']:.2f} s", "—",
            f"lease TTL {r['lease_ttl_s']} s + {r['expiry_s'] - r['lease_ttl_s']:.2f} s",
            "≤ TTL + 1 s", r["expiry_s"] <= r["lease_ttl_s"] + 1)
    if not failed("health", "Health-gated links"):
        r = results["health"]
        up, down = r["healthy_to_line"], r.get("unhealthy_to_gone")
        row(f"Health-gated links (`hostsyncd.health=wait`): the engine's `health_status: "
            f"healthy` event until the dependent's file has the line, median (p95) of "
            f"{up['n']}",
            f"{_ms(up['median'])} ({_ms(up['p95'])})", "— (no health gating)",
            "unhealthy event until the line is gone: "
            + (f"{_ms(down['median'])} ({_ms(down['p95'])})" if down else "not measured"),
            "(report)", None)
    return rows


def markdown(rows: list[dict[str, str]], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    head = (f"Measured {meta['date']} on {m['cores']} cores, Linux {m['kernel']}, Docker engine "
            f"{m['engine']} (API {m['api']}), Python {m['python']}, commit `{m['commit']}`"
            f"{' (quick run)' if meta['quick'] else ''}"
            f"{_changed(meta)}; 1-minute load average "
            f"{_load_range(meta)} on this shared machine. Ratio = hostsyncd / `--link`, "
            "measured in the same run.\n\n")
    lines = ["| what | hostsyncd | --link | ratio / figure | target | met? |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = [r[k].replace("|", "\\|") for k in ("what", "hostsyncd", "link", "figure",
                                                   "target", "met")]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def _changed(meta: dict[str, Any]) -> str:
    end = meta.get("code_digest_end")
    if end is None or end == meta["machine"].get("code_digest"):
        return ""
    return f" (**hostsyncd's code changed during the run**, to `{meta['commit_end']}`)"


def _load_range(meta: dict[str, Any]) -> str:
    loads = [meta["machine"]["loadavg"][0], *meta.get("loadavg_after", {}).values()]
    return f"{min(loads):.1f}-{max(loads):.1f}"


def plain(rows: list[dict[str, str]]) -> str:
    keys = ("what", "hostsyncd", "link", "figure", "target", "met")
    titles = dict(zip(keys, ("what", "hostsyncd", "--link", "ratio/figure", "target", "met?"),
                      strict=True))
    cut = {k: 58 if k == "what" else 34 for k in keys}
    cells = [{k: r[k].replace("**", "")[:cut[k]] for k in keys} for r in rows]
    widths = {k: max([len(titles[k])] + [len(c[k]) for c in cells]) for k in keys}
    out = ["  ".join(titles[k].ljust(widths[k]) for k in keys)]
    out += ["  ".join(c[k].ljust(widths[k]) for k in keys) for c in cells]
    return "\n".join(out)


# -- the plot -----------------------------------------------------------------------------

def plot(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    fig.suptitle(title, fontsize=10)
    ok = {name: res for name, res in results.items() if "error" not in res}
    colors = {"hostsyncd": "tab:blue", "link": "tab:orange"}

    ax = axes[0][0]
    if "propagation" in ok:
        raw = ok["propagation"]["raw_ms"]
        ax.boxplot([raw["hostsyncd"], raw["link"]])
        ax.set_xticks([1, 2], ["hostsyncd", "--link"])
        ax.set_ylabel("ms from docker start")
    ax.set_title("Propagation, per cycle")

    ax = axes[0][1]
    if "fanout" in ok:
        by_n = ok["fanout"]["by_n"]
        ns = [int(n) for n in by_n]
        for side, label in (("hostsyncd", "hostsyncd"), ("link", "--link")):
            med = [by_n[str(n)][side]["median"] for n in ns]
            lo = [m - by_n[str(n)][side]["min"] for n, m in zip(ns, med, strict=True)]
            hi = [by_n[str(n)][side]["max"] - m for n, m in zip(ns, med, strict=True)]
            ax.errorbar(ns, med, yerr=[lo, hi], marker="o", capsize=3, label=label,
                        color=colors[side])
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("dependents of each kind (N)")
        ax.set_ylabel("ms until all show the new IP (median, min-max)")
        ax.legend()
    ax.set_title("Fan-out")

    ax = axes[0][2]
    if "synthetic" in ok:
        r = ok["synthetic"]
        ns = [int(n) for n in r["by_n"]]
        ax.plot(ns, [r["by_n"][str(n)]["us_per_container"] for n in ns], "o-",
                label="steady pass (best)")
        ax.plot(ns, [r["by_n"][str(n)]["us_per_container_first"] for n in ns], "s--",
                label="first pass (cold label cache)")
        for mode, style in (("gc_frozen", "v:"), ("gc_off", "^:")):
            diag = r.get("diagnosis", {}).get(mode)
            if diag:
                ax.plot([int(n) for n in diag], list(diag.values()), style, color="grey",
                        label=f"steady, {mode.replace('_', ' ')}")
        ax.axhline(20, color="red", linestyle=":", label="target 20 µs")
        ax.set_xlabel(f"containers (links = 5 {X} containers)")
        ax.set_ylabel("µs per container")
        ax.set_ylim(bottom=0)
        ax.legend()
    ax.set_title("Scale model: plan_all + render")

    ax = axes[1][0]
    if "resync" in ok:
        by_n = ok["resync"]["by_n"]
        ns = [int(n) for n in by_n]
        ax.plot(ns, [by_n[str(n)]["wall_ms"]["median"] for n in ns], "o-", label="wall")
        ax.plot(ns, [by_n[str(n)]["cpu_ms"]["median"] for n in ns], "s-", label="CPU")
        for n in ns:
            ax.annotate(f"{'/'.join(map(str, by_n[str(n)]['api_calls']))} call",
                        (n, by_n[str(n)]["wall_ms"]["median"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlabel("containers (half dependents)")
        ax.set_ylabel("ms per full resync (median)")
        ax.set_ylim(0, 1.25 * max(by_n[str(n)]["wall_ms"]["median"] for n in ns))
        ax.legend()
    ax.set_title("Full resync, real engine")

    ax = axes[1][1]
    if "event_storm" in ok:
        r = ok["event_storm"]
        bars = [("hostsyncd\nwrites", r["hostsyncd"]["writes"]["median"], "hostsyncd"),
                ("hostsyncd\ndistinct", r["hostsyncd"]["distinct"]["median"], "hostsyncd"),
                ("--link\nwrites", r["link"]["writes"]["median"], "link")]
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color=[colors[b[2]] for b in bars])
        ax.axhline(r["targets"], color="grey", linestyle=":", label="targets restarted")
        ax.set_ylabel("writes / contents per dependent (median)")
        ax.legend(title=f"{r['over_bound']} over writes ≤ distinct + 1")
    ax.set_title("Event storm")

    ax = axes[1][2]
    if "first_read" in ok:
        r = ok["first_read"]
        ax.bar(["hostsyncd", "--link"], [r["hostsyncd_pct"], r["link_pct"]],
               color=[colors["hostsyncd"], colors["link"]])
        ax.axhline(98, color="red", linestyle=":", label="target 98%")
        ax.set_ylim(0, 160)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel(f"% of {r['restarts']} restarts")
        ax.legend(loc="upper right")
    notes = []
    if "footprint" in ok:
        r = ok["footprint"]
        notes += [f"peak RSS {r['vm_hwm_mb']:.1f} MB (target ≤ 60)",
                  f"idle CPU {r['idle_cpu_s_per_60s']:.2f} s / 60 s (target ≤ 0.1)",
                  f"  {r['watchdog_pings']} pings, {r['state_file_writes']} state writes"]
    if "torn_reads" in ok:
        r = ok["torn_reads"]
        notes += [f"torn/empty reads: hostsyncd {r['hostsyncd_torn'] + r['hostsyncd_empty']}, "
                  f"--link {r['link_torn'] + r['link_empty']}"]
    if notes:
        ax.text(0.03, 0.97, "\n".join(notes), transform=ax.transAxes, fontsize=8, va="top",
                bbox={"facecolor": "white", "alpha": 0.85})
    ax.set_title("First read; footprint, torn reads")

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------

def _leftovers(bench: Bench) -> list[str]:
    """Containers an interrupted earlier run left on the bench engine (prefix b<pid>-)."""
    return [c["Id"] for c in bench.api.containers(all=True)
            if any(re.fullmatch(r"/b\d+-[^/]+", n) for n in c["Names"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cycles: a smoke check")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {ORDER}")
    parser.add_argument("--profile", action="store_true", help="py-spy on every daemon")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--engine", default="20.10", choices=list(lib.ENGINES),
                        help="the engine version to measure on (default 20.10)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(ORDER)
    unknown = set(names) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s): {sorted(unknown)}")
    if args.profile:
        lib.PROFILE = os.environ["HSD_BENCH_PROFILE"] = "py-spy"
    params = QUICK if args.quick else FULL
    stamp = (time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
             + ("" if args.engine == "20.10" else f"-docker{args.engine}"))
    workroot = Path(tempfile.mkdtemp(prefix=f"hsdbench-{stamp}-"))
    bench = Bench(engine=args.engine)
    stale = _leftovers(bench)
    if stale:
        print(f"removing {len(stale)} containers an earlier run left behind", flush=True)
        bench.remove(stale)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "quick": args.quick,
        "machine": bench.machine(), "params": {n: params[n] for n in names},
        "workdir": str(workroot), "durations_s": {},
    }
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        for name in names:
            print(f"== {name} ...", flush=True)
            t = time.monotonic()
            workdir = workroot / name
            try:
                results[name] = run_one(name, bench, workdir, params[name])
            except Exception as exc:  # noqa: BLE001 - one failure must not lose the rest
                traceback.print_exc()
                results[name] = {"error": "".join(traceback.format_exception(exc))}
            finally:
                bench.cleanup()
            meta["durations_s"][name] = round(time.monotonic() - t, 1)
            meta.setdefault("loadavg_after", {})[name] = round(os.getloadavg()[0], 2)
            if args.profile:
                results[name]["profiles"] = {
                    str(p.relative_to(workroot)): profile_summary(p)
                    for p in sorted(workdir.rglob("profile-*.txt")) if p.stat().st_size}
            print(f"   {name}: {meta['durations_s'][name]} s", flush=True)
    finally:
        bench.cleanup()
    meta["total_s"] = round(time.monotonic() - started, 1)
    meta["commit_end"] = lib.git_commit()
    meta["code_digest_end"] = lib.code_digest()
    if meta["code_digest_end"] != meta["machine"]["code_digest"]:
        print("WARNING: hostsyncd's source changed during the run", flush=True)
    meta["loadavg_end"] = os.getloadavg()
    rows = table_rows(results)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stamp}.json"
    png_path = args.out / f"{stamp}.png"
    json_path.write_text(json.dumps({**meta, "table": rows, "results": results}, indent=1,
                                    default=str) + "\n")
    machine = meta["machine"]
    title = (f"hostsyncd vs --link, {meta['date']}, {machine['cores']} cores, "
             f"engine {machine['engine']}, commit {machine['commit']}"
             f"{', quick' if args.quick else ''}")
    try:
        plot(results, png_path, title)
    except Exception:  # noqa: BLE001 - the numbers matter more than the picture
        traceback.print_exc()
        png_path = None  # type: ignore[assignment]
    # The README's table comes from full runs of everything only.
    table = args.out / ("latest.md" if not args.quick and names == list(ORDER)
                        and args.engine == "20.10" else f"{stamp}.md")
    table.write_text(markdown(rows, meta))
    print()
    print(plain(rows))
    print(f"\nresults: {json_path}\nplot:    {png_path}\ntable:   {table}"
          f"\nlogs:    {workroot}\ntotal:   {meta['total_s']:.0f} s")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
