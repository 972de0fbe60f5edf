"""Pure pieces of the service side: sd_notify addressing, journald fields, views."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
import time

import pytest

from hostsyncd import log as hlog
from hostsyncd._notify import Notifier
from hostsyncd.core.graph import Snapshot, plan_all
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.log import journald_fields
from hostsyncd.state import summary_line
from hostsyncd.views import graph_dot, graph_json, graph_text, status_text

A = "a" * 64
B = "b" * 64


def test_notifier_sends_datagrams_to_notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.enabled
        notifier.ready()
        notifier.status("3 dependents")
        notifier.status("3 dependents")  # unchanged: not sent again
        notifier.stopping()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1", "STATUS=3 dependents", "STOPPING=1"]


def test_notifier_is_silent_without_systemd():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    assert notifier.watchdog_interval is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env, expected):
    assert Notifier(env).watchdog_interval == expected


def test_journald_fields_are_upper_case_with_readable_message():
    fields = journald_fields(None, "info", {
        "event": "hosts file updated", "level": "info", "timestamp": "x",
        "container_name": "web", "container_id": A, "added": ["10.0.0.2\tdb"], "removed": [],
    })
    assert fields["PRIORITY"] == "6"
    assert fields["SYSLOG_IDENTIFIER"] == "hostsyncd"
    assert fields["CONTAINER_NAME"] == "web"
    assert fields["CONTAINER_ID"] == A
    assert fields["ADDED"] == '["10.0.0.2\\tdb"]'
    assert fields["MESSAGE"].startswith("hosts file updated container_name=web")
    assert all(key == key.upper() for key in fields)
    assert "TIMESTAMP" not in fields


def test_journald_fields_carry_the_exception_in_one_entry():
    try:
        raise ValueError("boom")
    except ValueError:
        exception = "Traceback ...\nValueError: boom"
    fields = journald_fields(None, "error", {"event": "unexpected error", "level": "error",
                                             "exception": exception, "weird-key": 1})
    assert fields["PRIORITY"] == "3"
    assert fields["EXCEPTION"] == exception
    assert "ValueError: boom" in fields["MESSAGE"]
    assert fields["WEIRD_KEY"] == "1"


def _snapshot() -> Snapshot:
    net = Endpoint("bridge", "n1", "10.0.0.2")
    return Snapshot([
        Container(A, "web", "running", {"hostsyncd.links": 'db:data,gone,bad/"x'},
                  endpoints=(Endpoint("bridge", "n1", "10.0.0.3"),)),
        Container(B, "db", "running", endpoints=(net,)),
    ])


def test_graph_views_flag_unresolved_and_invalid_links():
    plans = plan_all(_snapshot(), "hostsyncd.links").values()
    text = graph_text(plans)
    assert "-> db:data  =>  db  via bridge 10.0.0.2" in text
    assert "!! gone  unresolved: no such container" in text
    assert "xx invalid link spec" in text
    dot = graph_dot(plans)
    assert '"web" -> "db" [label="data\\nbridge 10.0.0.2"];' in dot
    assert 'style=dashed, color=red' in dot
    # The untrusted spec text is quoted so it cannot break out of the DOT string.
    assert re.sub(r"\\.", "", dot).count('"') % 2 == 0
    assert '\\"x' in dot
    data = graph_json(plans)
    assert '"problem": "no such container"' in data


def test_dot_output_renders_with_graphviz(tmp_path):
    import shutil
    import subprocess

    dot = shutil.which("dot")
    assert dot, "graphviz (dot) is installed by scripts/ensure-deps.sh"
    plans = plan_all(_snapshot(), "hostsyncd.links").values()
    out = subprocess.run([dot, "-Tsvg"], input=graph_dot(plans).encode(), capture_output=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert b"<svg" in out.stdout


# --- summary_line / status_text with a cluster section -------------------------------------

SINCE = 1_700_000_000.0


def _state(cluster: dict | None) -> dict:
    data = {
        "pid": 4242,
        "started": SINCE - 60,
        "updated": SINCE + 5,
        "ready": True,
        "engine": {"url": "unix:///var/run/docker.sock", "connected": True,
                   "version": "27.0", "since": SINCE - 60, "reason": ""},
        "counts": {"dependents": 2, "links": 3, "unresolved": 0, "invalid_specs": 0,
                   "writes": 4, "write_errors": 0},
        "dependents": [{
            "id": A, "name": "web", "state": "running", "invalid": [], "last_write": None,
            "links": [{"spec": "b/db", "alias": "db", "targets": ["b/db"],
                       "network": "macvlan0", "addresses": ["192.0.2.7"], "problem": None}],
        }],
        "recent_errors": [],
    }
    if cluster is not None:
        data["cluster"] = cluster
    return data


def _cluster(connected: bool = True, remote: dict | None = None, **extra: object) -> dict:
    cluster = {
        "enabled": True, "node": "a", "connected": connected, "since": SINCE,
        "reason": "" if connected else "watcher: ConnectionError",
        "endpoint": "http://etcd1:2379", "published": ["cache", "db"],
        "remote": {"b": ["db", "queue"]} if remote is None else remote,
    }
    cluster.update(extra)
    return cluster


def _hms(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def test_summary_line_with_the_cluster_connected():
    line = summary_line(_state(_cluster()))
    assert line == "2 dependents, 3 links, engine connected, cluster ok (1 other node)"


@pytest.mark.parametrize(("remote", "text"), [
    ({}, "cluster ok (0 other nodes)"),
    ({"b": ["db"], "c": ["db", "x"]}, "cluster ok (2 other nodes)"),
    ({"b": [], "c": [], "d": ["x"]}, "cluster ok (3 other nodes)"),
])
def test_summary_line_counts_the_other_nodes(remote, text):
    assert summary_line(_state(_cluster(remote=remote))).endswith(", " + text)


def test_summary_line_with_the_cluster_degraded():
    line = summary_line(_state(_cluster(connected=False)))
    assert line == (f"2 dependents, 3 links, engine connected, "
                    f"cluster degraded since {_hms(SINCE)}")
    assert re.search(r"cluster degraded since \d\d:\d\d:\d\d$", line)


def test_summary_line_with_both_engine_and_cluster_down():
    data = _state(_cluster(connected=False))
    data["engine"].update(connected=False, since=SINCE - 10, reason="refused")
    data["counts"]["unresolved"] = 1
    assert summary_line(data) == (
        f"2 dependents, 3 links, 1 unresolved, engine unreachable since {_hms(SINCE - 10)}, "
        f"retrying, cluster degraded since {_hms(SINCE)}")


@pytest.mark.parametrize("cluster", [None, {"enabled": False}, {}])
def test_summary_line_without_a_cluster_has_no_cluster_part(cluster):
    line = summary_line(_state(cluster))
    assert line == "2 dependents, 3 links, engine connected"
    assert "cluster" not in line


def test_status_text_with_the_cluster_connected():
    text = status_text(_state(_cluster()))
    lines = text.splitlines()
    (head,) = [line for line in lines if line.startswith("cluster:")]
    assert "node a" in head
    assert "connected to http://etcd1:2379" in head
    assert "DEGRADED" not in text
    assert any("publishes 2: cache, db" in line for line in lines)
    assert any(re.search(r"node b: db, queue$", line) for line in lines)
    assert "last known" not in text
    # The cluster lines come with the header, before the dependents.
    assert lines.index(head) < lines.index(next(x for x in lines if x.startswith("web (")))
    assert "-> b/db: b/db macvlan0 192.0.2.7" in text


def test_status_text_with_the_cluster_degraded():
    text = status_text(_state(_cluster(connected=False,
                                       remote={"b": ["db"], "c": ["cache", "db"]})))
    lines = text.splitlines()
    (head,) = [line for line in lines if line.startswith("cluster:")]
    assert "DEGRADED" in head
    assert "watcher: ConnectionError" in head
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(SINCE)) in head
    kept = [line for line in lines if "(last known, kept)" in line]
    assert len(kept) == 2
    assert any("node b (last known, kept): db" in line for line in kept)
    assert any("node c (last known, kept): cache, db" in line for line in kept)


def test_status_text_publishing_nothing_says_so():
    text = status_text(_state(_cluster(published=[], remote={})))
    assert "publishes 0: -" in text


@pytest.mark.parametrize("cluster", [None, {"enabled": False}])
def test_status_text_without_a_cluster_has_no_cluster_line(cluster):
    text = status_text(_state(cluster))
    assert not any(line.startswith("cluster:") for line in text.splitlines())
    assert "publishes" not in text
    assert "DEGRADED" not in text


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


CONFLICT = "node name 'a' is held by another daemon (host h2, pid 7): this one does not publish"


def test_summary_line_says_when_another_daemon_holds_the_node_name():
    line = summary_line(_state(_cluster(published=[], claimed=False, conflict=CONFLICT)))
    assert line == ("2 dependents, 3 links, engine connected, NOT PUBLISHING: node name a "
                    "held by another daemon, cluster ok (1 other node)")
    assert "NOT PUBLISHING" not in summary_line(_state(_cluster(claimed=True, conflict="")))


def test_status_text_says_when_another_daemon_holds_the_node_name():
    text = status_text(_state(_cluster(published=[], claimed=False, conflict=CONFLICT)))
    assert f"NOT PUBLISHING: {CONFLICT}" in text
    assert "publishes 0: -" in text
    assert "NOT PUBLISHING" not in status_text(_state(_cluster(claimed=True, conflict="")))


def test_status_text_shows_what_is_ignored():
    text = status_text(_state(_cluster(ignored={"rejected": 7, "over_cap": {"b": 3}})))
    assert "ignored: 7 invalid records; over max_records_per_node: b (3)" in text
    assert "ignored" not in status_text(_state(_cluster(ignored={"rejected": 0,
                                                                 "over_cap": {}})))


def test_a_logger_handed_out_before_a_reload_follows_the_new_level() -> None:
    """The daemon's reload reconfigures logging and hands no logger out again: every
    logger it gave the reconciler and the problem log must follow."""
    stream = io.StringIO()
    try:
        hlog.configure("info", "json", stream)
        handed_out = hlog.get_logger()
        handed_out.debug("before")
        hlog.configure("debug", "json", stream)
        handed_out.debug("after")
        hlog.configure("info", "json", stream)
        handed_out.debug("back")
    finally:
        hlog.configure("info", "console", sys.stderr)
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["after"]
