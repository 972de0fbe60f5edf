"""Pure pieces of the service side: sd_notify addressing, journald fields, views."""

from __future__ import annotations

import os
import re
import socket
import sys

import pytest

from hostsyncd.core.graph import Snapshot, plan_all
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.logging import journald_fields
from hostsyncd.notify import Notifier
from hostsyncd.views import graph_dot, graph_json, graph_text

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


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
