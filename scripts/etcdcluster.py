#!/usr/bin/env python3
"""A private 3-member etcd cluster on loopback for hostsyncd's cluster tests (stdlib only).

Each member is Debian's ``/usr/bin/etcd`` (3.4), listening on 127.0.0.1 only:

    member  client URL                peer URL                  data dir
    m1      http://127.0.0.1:23791    http://127.0.0.1:23801    <root>/m1.etcd
    m2      http://127.0.0.1:23792    http://127.0.0.1:23802    <root>/m2.etcd
    m3      http://127.0.0.1:23793    http://127.0.0.1:23803    <root>/m3.etcd

(the first client and peer ports are configurable; the root defaults to /tmp/hsdetcd).
Each member logs to ``<root>/<member>.log`` and runs in a session of its own, so it
outlives the Python process that started it and one cluster serves many test runs.
``ensure_running`` reuses a cluster whose members all answer ``GET /health`` with
``{"health":"true"}``; it restarts members that are down (from their data dirs) and, when
that does not give a healthy cluster, wipes every data dir and bootstraps a new cluster.

Short raft timings (``--heartbeat-interval 50 --election-timeout 500``) make elections
and lease expiry settle fast on loopback.

The test API (``EtcdCluster``): ``endpoints``, ``ensure_running()``, ``kill(member)``
(SIGKILL), ``stop(member)``, ``start(member)`` (again from its data dir, with
``--initial-cluster-state existing``), ``pause(member)``/``resume(member)`` (SIGSTOP and
SIGCONT: a hung member), ``stop_all()``, ``start_all()``, ``healthy()``,
``member_healthy(member)``, ``log_tail(member)``, plus a small v3 JSON-gateway client:
``put``, ``get``, ``range_prefix``, ``delete_prefix``.

CLI::

    python3 scripts/etcdcluster.py start  [--root DIR] [--client-port P] [--peer-port P]
    python3 scripts/etcdcluster.py stop   [--root DIR] ...
    python3 scripts/etcdcluster.py status [--root DIR] ...
    python3 scripts/etcdcluster.py kill MEMBER | restart MEMBER

`start` prints an `ENDPOINTS=...` line (comma-separated client URLs).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctools import alive, locked, read_cmdline, reap, wait_gone

DEFAULT_ROOT = Path("/tmp/hsdetcd")
DEFAULT_CLIENT_PORT = 23791
DEFAULT_PEER_PORT = 23801
DEFAULT_SIZE = 3
HOST = "127.0.0.1"
HEARTBEAT_MS = 50
ELECTION_MS = 500


class EtcdError(RuntimeError):
    """The cluster could not be started, stopped or used."""


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _unb64(data: str) -> str:
    return base64.b64decode(data).decode(errors="replace")


def _prefix_end(key: str) -> bytes:
    """The range_end that selects every key starting with `key`."""
    raw = bytearray(key.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


@dataclass(frozen=True)
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    logfile: Path

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"


class EtcdCluster:
    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        *,
        size: int = DEFAULT_SIZE,
        client_port: int = DEFAULT_CLIENT_PORT,
        peer_port: int = DEFAULT_PEER_PORT,
        etcd: str | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.members = [
            Member(
                name=f"m{i + 1}",
                client_port=client_port + i,
                peer_port=peer_port + i,
                data_dir=self.root / f"m{i + 1}.etcd",
                logfile=self.root / f"m{i + 1}.log",
            )
            for i in range(size)
        ]
        self._etcd = etcd
        self._lockfile = self.root / "cluster.lock"
        self._token_file = self.root / "cluster-token"

    # -- addresses --------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def member(self, which: str | int | Member) -> Member:
        """A member by name ("m2"), index (1) or client URL."""
        if isinstance(which, Member):
            return which
        if isinstance(which, int):
            return self.members[which]
        for m in self.members:
            if which in (m.name, m.client_url):
                return m
        raise KeyError(f"no etcd member {which!r} (members: {self.names})")

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    # -- HTTP -------------------------------------------------------------------------

    def _call(
        self, url: str, path: str, body: dict[str, Any] | None = None, timeout: float = 2.0
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        req = urllib.request.Request(url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out: dict[str, Any] = json.loads(resp.read() or b"{}")
        return out

    def call(self, path: str, body: dict[str, Any] | None = None, timeout: float = 2.0) -> Any:
        """POST body (JSON) to the first member that answers; raise EtcdError if none does."""
        errors = []
        for m in self.members:
            try:
                return self._call(m.client_url, path, body, timeout)
            except urllib.error.HTTPError as exc:
                errors.append(f"{m.name}: HTTP {exc.code} {exc.read()[:300]!r}")
            except (OSError, ValueError) as exc:
                errors.append(f"{m.name}: {exc}")
        raise EtcdError(f"no etcd member answered {path}: " + "; ".join(errors))

    def member_healthy(self, which: str | int | Member, timeout: float = 1.0) -> bool:
        """The member answers GET /health with health "true" (it sees a leader)."""
        m = self.member(which)
        try:
            return self._call(m.client_url, "/health", timeout=timeout).get("health") == "true"
        except (OSError, ValueError):
            return False

    def member_status(self, which: str | int | Member, timeout: float = 1.0) -> dict[str, Any]:
        m = self.member(which)
        return self._call(m.client_url, "/v3/maintenance/status", {}, timeout)

    def healthy(self) -> bool:
        return all(self.member_healthy(m) for m in self.members)

    # kv (the v3 JSON gateway: keys and values are base64)
    def put(self, key: str, value: str, lease: int | None = None) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = str(lease)
        self.call("/v3/kv/put", body)

    def get(self, key: str) -> str | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return _unb64(kvs[0]["value"]) if kvs else None

    def range_prefix(self, prefix: str) -> dict[str, str]:
        """{key: value} for every key under prefix (a linearizable read)."""
        body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        kvs = self.call("/v3/kv/range", body).get("kvs") or []
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in kvs}

    def range_prefix_with_leases(self, prefix: str) -> dict[str, tuple[str, int]]:
        """{key: (value, lease id or 0)} for every key under prefix."""
        body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        kvs = self.call("/v3/kv/range", body).get("kvs") or []
        return {
            _unb64(kv["key"]): (_unb64(kv.get("value", "")), int(kv.get("lease", 0)))
            for kv in kvs
        }

    def delete_prefix(self, prefix: str) -> int:
        body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        return int(self.call("/v3/kv/deleterange", body).get("deleted", 0))

    # -- processes --------------------------------------------------------------------

    def pid(self, which: str | int | Member) -> int | None:
        """The pid of this member's etcd (found by its data dir), if it runs."""
        m = self.member(which)
        want = str(m.data_dir)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            cmd = read_cmdline(int(entry.name))
            if not cmd or Path(cmd[0]).name != "etcd":
                continue
            with contextlib.suppress(ValueError):
                if cmd[cmd.index("--data-dir") + 1] == want and alive(int(entry.name)):
                    return int(entry.name)
        return None

    def running(self, which: str | int | Member) -> bool:
        return self.pid(which) is not None

    def log_tail(self, which: str | int | Member | None = None, lines: int = 30) -> str:
        """The last lines of one member's log, or of every member's."""
        members = self.members if which is None else [self.member(which)]
        out = []
        for m in members:
            try:
                with m.logfile.open("rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 64 * 1024))
                    text = f.read().decode(errors="replace")
                tail = "\n".join(text.splitlines()[-lines:])
            except OSError as exc:
                tail = f"(no log: {exc})"
            out.append(f"--- {m.logfile} ---\n{tail}")
        return "\n".join(out)

    def _binary(self) -> str:
        etcd = self._etcd or shutil.which("etcd") or "/usr/bin/etcd"
        if not Path(etcd).exists():
            raise EtcdError("etcd not found: run scripts/ensure-deps.sh etcd")
        return etcd

    def _command(self, m: Member, state: str, token: str) -> list[str]:
        return [
            self._binary(),
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self._initial_cluster(),
            "--initial-cluster-state", state,
            "--initial-cluster-token", token,
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip

    def _spawn(self, m: Member, state: str) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._token_file.exists():
            self._token_file.write_text(f"hsdetcd-{secrets.token_hex(4)}\n")
        token = self._token_file.read_text().strip()
        cmd = self._command(m, state, token)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with m.logfile.open("ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        return proc.pid

    def _wait_answering(self, members: list[Member], pids: dict[str, int], timeout: float) -> None:
        """Until every member answers /health with a leader; fail early if one exits."""
        deadline = time.monotonic() + timeout
        while True:
            for m in members:
                pid = pids.get(m.name)
                if pid is not None and not alive(pid):
                    reap(pid)
                    raise EtcdError(
                        f"etcd member {m.name} exited while starting\n{self.log_tail(m)}"
                    )
            if all(self.member_healthy(m, timeout=0.5) for m in members):
                return
            if time.monotonic() >= deadline:
                bad = [m.name for m in members if not self.member_healthy(m, timeout=0.5)]
                raise EtcdError(
                    f"etcd members {bad} not healthy within {timeout}s\n"
                    + self.log_tail(None, lines=15)
                )
            time.sleep(0.05)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._lockfile)

    # -- lifecycle --------------------------------------------------------------------

    def ensure_running(self, timeout: float = 30) -> None:
        """Reuse a healthy cluster; start members that are down; bootstrap afresh if the
        data dirs do not give a healthy cluster."""
        if self.healthy():
            return
        with self._locked():
            for m in self.members:  # a member left paused by an earlier run
                self.resume(m)
            if self.healthy():
                return
            if all(m.data_dir.exists() for m in self.members):
                try:
                    self._start_missing("existing", timeout=min(timeout, 15))
                    return
                except EtcdError as exc:
                    with (self.root / "cluster.log").open("a") as log:
                        log.write(f"{time.strftime('%F %T')} restart from the data dirs "
                                  f"failed, bootstrapping anew: {exc}\n")  # fmt: skip
            self._bootstrap(timeout)

    def _start_missing(self, state: str, timeout: float) -> None:
        pids = {}
        for m in self.members:
            pid = self.pid(m)
            if pid is None:
                pid = self._spawn(m, state)
            pids[m.name] = pid
        self._wait_answering(self.members, pids, timeout)

    def _bootstrap(self, timeout: float) -> None:
        self._kill_all()
        for m in self.members:
            shutil.rmtree(m.data_dir, ignore_errors=True)
        self._token_file.write_text(f"hsdetcd-{secrets.token_hex(4)}\n")
        pids = {m.name: self._spawn(m, "new") for m in self.members}
        self._wait_answering(self.members, pids, timeout)

    def _kill_all(self) -> None:
        for m in self.members:
            pid = self.pid(m)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not wait_gone(pid, 10):
                    raise EtcdError(f"etcd {m.name} (pid {pid}) survived SIGKILL")

    def kill(self, which: str | int | Member) -> None:
        """SIGKILL one member and wait until it is gone."""
        m = self.member(which)
        pid = self.pid(m)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_gone(pid, 10):
            raise EtcdError(f"etcd {m.name} (pid {pid}) survived SIGKILL")

    def pause(self, which: str | int | Member) -> None:
        """SIGSTOP one member: it hangs (connections stay open, nothing answers)."""
        m = self.member(which)
        pid = self.pid(m)
        if pid is None:
            raise EtcdError(f"etcd {m.name} is not running")
        os.kill(pid, signal.SIGSTOP)

    def resume(self, which: str | int | Member) -> None:
        """SIGCONT a member paused with pause()."""
        pid = self.pid(self.member(which))
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def stop(self, which: str | int | Member, timeout: float = 10) -> None:
        """SIGTERM one member (SIGKILL after timeout) and wait until it is gone."""
        m = self.member(which)
        pid = self.pid(m)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            self.kill(m)

    def start(self, which: str | int | Member, timeout: float = 15, wait: bool = True) -> None:
        """Start a stopped member again from its data dir (`--initial-cluster-state
        existing`); with wait, return once it answers /health (it needs a quorum)."""
        m = self.member(which)
        with self._locked():
            pid = self.pid(m)
            if pid is None:
                if not m.data_dir.exists():
                    raise EtcdError(f"{m.data_dir} is missing: use ensure_running()")
                pid = self._spawn(m, "existing")
        if wait:
            self._wait_answering([m], {m.name: pid}, timeout)

    def stop_all(self, timeout: float = 10) -> None:
        for m in self.members:
            self.stop(m, timeout)

    def start_all(self, timeout: float = 20) -> None:
        """Start every stopped member from its data dir; return once all are healthy."""
        with self._locked():
            pids = {}
            for m in self.members:
                pid = self.pid(m)
                if pid is None:
                    if not m.data_dir.exists():
                        raise EtcdError(f"{m.data_dir} is missing: use ensure_running()")
                    pid = self._spawn(m, "existing")
                pids[m.name] = pid
        self._wait_answering(self.members, pids, timeout)

    def status(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "endpoints": self.endpoints,
            "members": {
                m.name: {
                    "pid": self.pid(m),
                    "healthy": self.member_healthy(m),
                    "client_url": m.client_url,
                    "peer_url": m.peer_url,
                    "log": str(m.logfile),
                }
                for m in self.members
            },
        }


# -- CLI ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "ensure the cluster runs and is healthy; print its endpoints"),
        ("stop", "stop every member (data dirs are kept)"),
        ("status", "show the members (exit 0 when all are healthy, 3 when not)"),
        ("kill", "SIGKILL one member"),
        ("restart", "start one stopped member again from its data dir"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
        p.add_argument("--client-port", type=int, default=DEFAULT_CLIENT_PORT)
        p.add_argument("--peer-port", type=int, default=DEFAULT_PEER_PORT)
        if name in ("kill", "restart"):
            p.add_argument("member", help="m1, m2, ...")
    args = parser.parse_args(argv)
    cluster = EtcdCluster(args.root, client_port=args.client_port, peer_port=args.peer_port)
    try:
        if args.command == "start":
            cluster.ensure_running()
            print(f"ENDPOINTS={','.join(cluster.endpoints)}")
            return 0
        if args.command == "stop":
            cluster.stop_all()
            return 0
        if args.command == "kill":
            cluster.kill(args.member)
            return 0
        if args.command == "restart":
            cluster.start(args.member)
            return 0
        state = cluster.status()
        print(json.dumps(state, indent=2))
        return 0 if all(m["healthy"] for m in state["members"].values()) else 3
    except (EtcdError, KeyError, OSError, subprocess.SubprocessError) as exc:
        print(f"etcdcluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
