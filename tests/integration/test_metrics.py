"""[metrics]: the node_exporter textfile of a real daemon, parsed with prometheus_client's
own parser and checked against what the test did to real containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .util import block_is, line, read_metrics, value

pytestmark = pytest.mark.engine


def writes(m: dict) -> float:
    return sum(value(m, "hostsyncd_writes_total", kind=k)
               for k in ("update", "repair", "fastpath"))


def _start(daemon: Any, prefix: str, textfile: Path, interval: float) -> Any:
    # A label of the test's own: the daemon counts only this test's dependents, whatever
    # else runs on the engine.
    return daemon.start(label=f"{prefix}links",
                        extra={"metrics": {"textfile": str(textfile), "interval": interval}})


def _updates(d: Any, name: str) -> int:
    return sum(1 for e in d.logs()
               if e.get("event") == "hosts file updated" and e.get("container_name") == name)


def test_the_textfile_follows_what_the_daemon_did(containers, networks, daemon, prefix,
                                                  tmp_path, wait_until):
    n1 = networks.create("n1")
    textfile = tmp_path / "textfile" / "hostsyncd.prom"
    textfile.parent.mkdir()
    d = _start(daemon, prefix, textfile, interval=1)
    d.wait_log(lambda e: e.get("event") == "ready", what="ready")
    db = containers.run("db", "--ip", n1.addr(10), network=n1.name)
    web = containers.run("web", labels={f"{prefix}links": f"{db} gone"}, network=n1.name)
    hosts = containers.hosts_path(web)
    wait_until(block_is(hosts, [line(n1.addr(10), db)]))

    # Every write is logged once. Docker 26 and newer rebuild a starting container's file
    # a second time, so web's block may be put back (a repair) after its first write.
    def settled() -> dict | None:
        m = read_metrics(textfile)
        ok = (value(m, "hostsyncd_links", state="resolved") == 1
              and writes(m) == _updates(d, web) >= 1)
        return m if ok else None

    before = wait_until(settled, what="the textfile showing web's writes")
    assert value(before, "hostsyncd_writes_total", kind="update") == 1
    assert value(before, "hostsyncd_dependents") == 1
    assert value(before, "hostsyncd_links", state="waiting") == 1  # gone: no such container
    assert value(before, "hostsyncd_links", state="unresolved") == 0
    assert value(before, "hostsyncd_links", state="invalid") == 0
    assert value(before, "hostsyncd_engine_up") == 1
    assert value(before, "hostsyncd_engine_events_total") > 0
    assert value(before, "hostsyncd_passes_total", kind="full") >= 1
    assert value(before, "hostsyncd_pass_duration_seconds_count") == (
        value(before, "hostsyncd_passes_total", kind="full")
        + value(before, "hostsyncd_passes_total", kind="events"))
    assert ("hostsyncd_cluster_up", ()) not in before  # the cluster is off
    assert textfile.stat().st_mode & 0o777 == 0o644

    # db moves to another address: its line goes at the disconnect, comes back at the
    # connect. Each of those writes follows an engine event.
    containers.disconnect(db, n1.name)
    wait_until(block_is(hosts, []))
    containers.connect(db, n1.name, "--ip", n1.addr(20))
    wait_until(block_is(hosts, [line(n1.addr(20), db)]))

    def moved() -> dict | None:
        m = read_metrics(textfile)
        return m if writes(m) == _updates(d, web) >= writes(before) + 2 else None

    after = wait_until(moved, what="the textfile showing web's two further writes")
    assert value(after, "hostsyncd_writes_total", kind="update") == 3
    assert value(after, "hostsyncd_write_errors_total", kind="io") == 0
    propagated = (value(after, "hostsyncd_propagation_seconds_count")
                  - value(before, "hostsyncd_propagation_seconds_count"))
    assert propagated == 2
    assert value(after, "hostsyncd_propagation_seconds_bucket", le="+Inf") == \
        value(after, "hostsyncd_propagation_seconds_count")
    assert value(after, "hostsyncd_engine_events_total") > \
        value(before, "hostsyncd_engine_events_total")
    assert value(after, "hostsyncd_links", state="resolved") == 1


def test_a_clean_stop_writes_the_final_counts(containers, daemon, prefix, tmp_path,
                                              wait_until):
    textfile = tmp_path / "hostsyncd.prom"
    # An hour between writes: only the first one (at start) and the one at the stop.
    d = _start(daemon, prefix, textfile, interval=3600)
    d.wait_log(lambda e: e.get("event") == "ready", what="ready")
    wait_until(textfile.exists, what="the first textfile")
    db = containers.run("db")
    web = containers.run("web", labels={f"{prefix}links": db})
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), db)]))
    first = read_metrics(textfile)
    assert value(first, "hostsyncd_dependents") == 0  # no write since the start
    assert d.stop() == 0
    final = read_metrics(textfile)
    assert value(final, "hostsyncd_dependents") == 1
    assert value(final, "hostsyncd_links", state="resolved") == 1
    assert value(final, "hostsyncd_writes_total", kind="update") == 1
    assert value(final, "hostsyncd_engine_up") == 1
    names = {name for name, _ in final}
    for family in ("hostsyncd_write_errors_total", "hostsyncd_passes_total",
                   "hostsyncd_pass_duration_seconds_bucket",
                   "hostsyncd_propagation_seconds_sum", "hostsyncd_problems",
                   "hostsyncd_start_time_seconds"):
        assert family in names
    assert sorted(p.name for p in tmp_path.iterdir() if "prom" in p.name) == \
        ["hostsyncd.prom"]  # no staging or temporary file left behind


def test_a_missing_directory_is_reported_once_and_serving_goes_on(containers, daemon,
                                                                 prefix, tmp_path,
                                                                 wait_until):
    textfile = tmp_path / "later" / "hostsyncd.prom"
    d = _start(daemon, prefix, textfile, interval=1)
    failed = d.wait_log(lambda e: "metrics.textfile" in str(e.get("event")),
                        what="the failed write reported")
    assert failed["level"] == "error"
    db = containers.run("db")
    web = containers.run("web", labels={f"{prefix}links": db})
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), db)]))
    textfile.parent.mkdir()
    m = wait_until(lambda: textfile.exists() and read_metrics(textfile),
                   timeout=40, what="the textfile once its directory is there")
    wait_until(lambda: any(e.get("event") == "problem resolved"
                           and "metrics.textfile" in str(e.get("problem"))
                           for e in d.logs()), what="the failure said resolved")
    reports = [e for e in d.logs() if "metrics.textfile" in str(e.get("event"))]
    assert len(reports) == 1, reports
    assert value(m, "hostsyncd_writes_total", kind="update") >= 1
