"""The start fast path's probe: a network inspect over a kept-open unix socket connection,
parsed into the same members as docker-py's path, and failing loudly, never guessing."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostsyncd.core.model import Endpoint
from hostsyncd.engine import NetworkProbe, members_from_inspect

NET = "ab" * 32
CID = "c" * 64
INSPECT = {
    "Name": "backend", "Id": NET,
    "Containers": {
        CID: {"Name": "db", "IPv4Address": "10.0.0.2/24", "IPv6Address": "fd00::2/64"},
        "ep-" + "e" * 64: {"Name": "starting", "IPv4Address": "10.0.0.3/24"},
    },
}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[dict]:
    """A fake engine on a unix socket: answers what `state` says, counts connections."""
    state: dict = {"status": 200, "body": json.dumps(INSPECT).encode(), "paths": [],
                   "connections": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            state["connections"] += 1
            super().setup()

        def do_GET(self) -> None:
            state["paths"].append(self.path)
            body = state["body"]
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    path = tmp_path / "engine.sock"
    server = _Server(str(path), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"unix://{path}"
    yield state
    server.shutdown()
    server.server_close()


def test_members_from_an_inspect_leave_out_endpoints_not_yet_joined() -> None:
    assert members_from_inspect(INSPECT, NET) == {
        CID: ("db", Endpoint("backend", NET, "10.0.0.2", "fd00::2"))}
    for odd in ({}, {"Containers": None}, {"Containers": []}, {"Containers": {CID: "x"}}):
        assert members_from_inspect(odd, NET) == {}


def test_the_probe_asks_over_one_kept_open_connection(fake_engine: dict) -> None:
    probe = NetworkProbe(fake_engine["url"])
    for _ in range(3):
        assert probe.members(NET) == {CID: ("db", Endpoint("backend", NET, "10.0.0.2",
                                                           "fd00::2"))}
    assert fake_engine["paths"] == [f"/networks/{NET}"] * 3
    assert fake_engine["connections"] == 1
    probe.close()


def test_an_unknown_network_is_no_members(fake_engine: dict) -> None:
    fake_engine["status"], fake_engine["body"] = 404, b'{"message": "not found"}'
    assert NetworkProbe(fake_engine["url"]).members(NET) == {}


def test_a_network_id_that_is_not_hex_is_never_sent(fake_engine: dict) -> None:
    probe = NetworkProbe(fake_engine["url"])
    for bad in ("../containers/json", "x y", "", "a" * 65, f"{NET}?all=1"):
        assert probe.members(bad) == {}
    assert fake_engine["paths"] == []


def test_an_error_answer_raises_and_the_next_call_reconnects(fake_engine: dict) -> None:
    probe = NetworkProbe(fake_engine["url"])
    fake_engine["status"], fake_engine["body"] = 500, b'{"message": "boom"}'
    with pytest.raises(OSError):
        probe.members(NET)
    fake_engine["status"], fake_engine["body"] = 200, json.dumps(INSPECT).encode()
    assert CID in probe.members(NET)
    assert fake_engine["connections"] == 2


def test_an_engine_that_is_away_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        NetworkProbe(f"unix://{tmp_path}/nothing.sock").members(NET)
