"""The etcd HTTP client takes nothing from the environment and follows no redirect.

A stand-in for etcd's JSON gateway, and a stand-in proxy and redirect target, all on
loopback: each records what reached it, so a test sees where the client really went.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostsyncd._etcd import EtcdClient, EtcdError
from hostsyncd.config import ClusterConfig

SECRET = "pw-" + "x" * 8


class Recorder:
    """An HTTP server on 127.0.0.1 answering each POST with `reply(path)`: (status,
    headers, body)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply = lambda path: (200, {}, {"header": {"revision": "1"}, "kvs": []})
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder.seen.append({"path": self.path, "headers": dict(self.headers),
                                      "body": body})  # fmt: skip
                status, headers, reply = recorder.reply(self.path)
                data = json.dumps(reply).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # a proxy sees absolute-URL GETs or CONNECTs

            def do_CONNECT(self) -> None:
                recorder.seen.append({"path": self.path, "headers": dict(self.headers)})
                self.send_response(502)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    etcd, other = Recorder(), Recorder()
    yield etcd, other
    etcd.close()
    other.close()


def client(url: str, **keys: Any) -> EtcdClient:
    return EtcdClient(ClusterConfig(endpoints=[url], timeout=3, **keys))


def test_proxy_variables_are_ignored(servers, monkeypatch: pytest.MonkeyPatch) -> None:
    etcd, proxy = servers
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    c = client(etcd.url)
    assert c.range(b"/hostsyncd/nodes/") == (1, [])
    assert proxy.seen == []
    assert [s["path"] for s in etcd.seen] == ["/v3/kv/range"]


def test_netrc_credentials_are_not_sent(servers, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:  # fmt: skip
    etcd, _ = servers
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login someone password {SECRET}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text(netrc.read_text())
    (tmp_path / ".netrc").chmod(0o600)
    client(etcd.url).range(b"/hostsyncd/nodes/")
    (seen,) = etcd.seen
    assert "Authorization" not in seen["headers"]


def _redirect_to(other: Recorder) -> Any:
    def reply(path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        if path == "/v3/auth/authenticate":
            return 200, {}, {"token": "the-token"}
        return 307, {"Location": other.url + path}, {}

    return reply


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_credentials_stay(servers, status: int) -> None:
    etcd, other = servers

    def reply(path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        if path == "/v3/auth/authenticate":
            return 200, {}, {"token": "the-token"}
        return status, {"Location": other.url + path}, {}

    etcd.reply = reply
    c = client(etcd.url, username="u", password=SECRET)
    with pytest.raises(EtcdError, match="redirect, which is not followed"):
        c.range(b"/hostsyncd/nodes/")
    assert other.seen == []
    assert [s["path"] for s in etcd.seen] == ["/v3/auth/authenticate", "/v3/kv/range"]


def test_a_redirected_login_is_refused_and_the_password_stays(servers) -> None:
    etcd, other = servers
    etcd.reply = lambda path: (307, {"Location": other.url + path}, {})
    c = client(etcd.url, username="u", password=SECRET)
    with pytest.raises(EtcdError, match="authentication refused: a redirect") as caught:
        c.range(b"/hostsyncd/nodes/")
    assert other.seen == []
    assert SECRET not in str(caught.value)
    assert SECRET in etcd.seen[0]["body"].decode()  # the real login went where it should


def test_a_watch_is_not_redirected(servers) -> None:
    etcd, other = servers
    etcd.reply = _redirect_to(other)
    with pytest.raises(EtcdError, match="redirect"):
        list(client(etcd.url, username="u", password=SECRET).watch(b"/hostsyncd/nodes/", 1))
    assert other.seen == []
