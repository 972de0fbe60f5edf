"""Fixtures for the multi-host suite (tests/cluster): links across hosts through etcd.

Every "host" is a private engine of scripts/privengine.py on this machine, and every host
runs its own hostsyncd, all sharing one private etcd cluster (scripts/etcdcluster.py):

- `etcd` (session): the 3-member cluster at $HSD_ETCD_ROOT (default /tmp/hsdetcd, client
  ports 23791-23793 and peer ports 23801-23803, the first of each overridable with
  $HSD_ETCD_CLIENT_PORT and $HSD_ETCD_PEER_PORT), started once and reused across runs.
  If it cannot start, tests using it fail (never skip), showing the members' log tails.
- `engine` (tests/conftest.py) is host "a"; `engine_b` and `engine_c` (session) are hosts
  "b" (/tmp/hsdtest-b, bridge hsdtestb0, 10.235.0.1/24) and "c" (/tmp/hsdtest-c, bridge
  hsdtestc0, 10.237.0.1/24), overridable like `engine` with $HSD_TEST_ROOT_B,
  $HSD_TEST_BRIDGE_B, $HSD_TEST_CIDR_B (and _C). Same rule: fail, never skip.
- `containers_b`, `containers_c`: `Containers` (tests/conftest.py) on those engines with
  the test's prefix, so `<prefix>db` on b and a dependent on a agree on the name.
- `nodes`: `nodes.start("b", **kwargs)` runs hostsyncd for node "b" on b's engine with a
  `[cluster]` section: the etcd endpoints, a key prefix unique to the test
  (`/hsdtest/<prefix>`), `node = "b"`, `lease_ttl = 3` and `timeout = 2` unless
  overridden with `cluster={...}`; other kwargs go to `DaemonFactory.sections`. One
  `DaemonFactory` per node (its own state file, config files and logs under
  `tmp_path/<node>`). Also `nodes.state(node)`, `nodes.status(node)` (the CLI),
  `nodes.key(node, name)`, `nodes.records()` ({node: {name: record}} read from etcd),
  `nodes.record(node, name)`, `nodes.links_of(node, dependent)` (the state file's links),
  and waits on this test's own daemons: `nodes.wait_record(node, name, ipv4=None)` (etcd
  holds the record) and `nodes.wait_addresses(node, dependent, [ip, ...])` (the node's
  state file shows these addresses). Another hostsyncd on the same engines (a manual run)
  may write the same lines, so a line alone does not prove the test's daemons wrote it;
  a failing test's dump lists such daemons.
- `notify`: a NOTIFY_SOCKET, as in tests/faults (`on_ready(fn)`, `collect`, `sent`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Containers,
    DaemonFactory,
    DaemonProcess,
    Networks,
    _test_failed,
    load_script,
    privengine,
    started_engine,
    wait_until,
)
from faults.conftest import Notify

etcdcluster = load_script("etcdcluster")

LEASE_TTL = 3
ETCD_TIMEOUT = 2.0
PUBLISH = "hostsyncd.publish"
HOSTS = {
    # node: (root, bridge, cidr) of its private engine; "a" is the `engine` fixture.
    "b": ("/tmp/hsdtest-b", "hsdtestb0", "10.235.0.1/24"),
    "c": ("/tmp/hsdtest-c", "hsdtestc0", "10.237.0.1/24"),
}


# -- etcd -----------------------------------------------------------------------------------


def etcd_cluster() -> Any:
    """The suite's etcd cluster as the environment places it (not started)."""
    return etcdcluster.EtcdCluster(
        Path(os.environ.get("HSD_ETCD_ROOT") or "/tmp/hsdetcd"),
        client_port=int(os.environ.get("HSD_ETCD_CLIENT_PORT")
                        or etcdcluster.DEFAULT_CLIENT_PORT),
        peer_port=int(os.environ.get("HSD_ETCD_PEER_PORT") or etcdcluster.DEFAULT_PEER_PORT),
    )


@pytest.fixture(scope="session")
def etcd() -> Any:
    cluster = etcd_cluster()
    try:
        cluster.ensure_running()
    except Exception as exc:  # noqa: BLE001 - any failure to start is a test failure
        pytest.fail(
            f"private etcd cluster at {cluster.root} is unavailable: {exc}\n"
            f"{cluster.log_tail()}",
            pytrace=False,
        )
    return cluster


# -- more hosts -------------------------------------------------------------------------------


def _private_engine(node: str) -> Any:
    root, bridge, cidr = HOSTS[node]
    suffix = node.upper()
    root = os.environ.get(f"HSD_TEST_ROOT_{suffix}") or root
    bridge = os.environ.get(f"HSD_TEST_BRIDGE_{suffix}") or bridge
    cidr = os.environ.get(f"HSD_TEST_CIDR_{suffix}") or cidr
    eng = privengine.PrivateEngine(Path(root), bridge=bridge, cidr=cidr)
    return started_engine(eng, f"private Docker engine for node {node} at {root}")


@pytest.fixture(scope="session")
def engine_b() -> Any:
    return _private_engine("b")


@pytest.fixture(scope="session")
def engine_c() -> Any:
    return _private_engine("c")


def _containers_on(engine: Any, prefix: str) -> Iterator[Containers]:
    engine.ensure_running()
    nets = Networks(engine, prefix)
    c = Containers(engine, prefix, privengine.DEFAULT_IMAGE, nets)
    yield c
    c.cleanup()
    nets.cleanup()


@pytest.fixture
def containers_b(engine_b: Any, prefix: str) -> Iterator[Containers]:
    yield from _containers_on(engine_b, prefix)


@pytest.fixture
def containers_c(engine_c: Any, prefix: str) -> Iterator[Containers]:
    yield from _containers_on(engine_c, prefix)


# -- one hostsyncd per node ---------------------------------------------------------------------


ENGINES = {"a": "engine", "b": "engine_b", "c": "engine_c"}  # node: its engine's fixture


class Nodes:
    """hostsyncd daemons for nodes "a", "b", "c", all on one etcd key prefix."""

    def __init__(self, etcd: Any, request: pytest.FixtureRequest, tmp: Path, prefix: str) -> None:
        self.etcd = etcd
        self.request = request
        self.tmp = tmp
        self.prefix = f"/hsdtest/{prefix.rstrip('-')}"
        self.factories: dict[str, DaemonFactory] = {}
        self.last: dict[str, DaemonProcess] = {}

    def factory(self, node: str) -> DaemonFactory:
        if node not in self.factories:
            engine = self.request.getfixturevalue(ENGINES[node])
            tmp = self.tmp / f"node-{node}"
            tmp.mkdir(parents=True, exist_ok=True)
            self.factories[node] = DaemonFactory(engine, tmp)
        return self.factories[node]

    def cluster_section(self, node: str, /, **overrides: Any) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "endpoints": list(self.etcd.endpoints),
            "prefix": self.prefix,
            "node": node,
            "lease_ttl": LEASE_TTL,
            "timeout": ETCD_TIMEOUT,
        }
        section.update(overrides)
        return section

    def write_config(self, node: str, *, cluster: dict[str, Any] | None = None,
                     **kwargs: Any) -> Path:  # fmt: skip
        extra = dict(kwargs.pop("extra", None) or {})
        extra["cluster"] = self.cluster_section(node, **{**extra.get("cluster", {}),
                                                         **(cluster or {})})
        return self.factory(node).write_config(extra=extra, **kwargs)

    def start(self, node: str, *, env: dict[str, str] | None = None,
              cluster: dict[str, Any] | None = None, **kwargs: Any) -> DaemonProcess:  # fmt: skip
        """Run hostsyncd for `node` on its engine. `cluster` overrides [cluster] keys;
        other kwargs go to DaemonFactory.sections (level, on_target_stop, ...)."""
        config = self.write_config(node, cluster=cluster, **kwargs)
        d = self.factory(node).start(env=env, config=config)
        self.last[node] = d
        return d

    def daemon(self, node: str) -> DaemonProcess:
        return self.last[node]

    # what a node's daemon reports
    def state_file(self, node: str) -> Path:
        return self.factory(node).tmp / "state.json"

    def state(self, node: str) -> dict[str, Any]:
        return json.loads(self.state_file(node).read_text())

    def cluster_state(self, node: str) -> dict[str, Any]:
        return self.state(node)["cluster"]

    def status(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`hostsyncd status [ARGS] --config <node's last config>`."""
        return self.factory(node).cli("status", *args, "--config", str(self.last[node].config))

    def links_of(self, node: str, dependent: str) -> list[dict[str, Any]]:
        """The state file's links of one dependent (by full name) on that node."""
        for dep in self.state(node).get("dependents", []):
            if dep.get("name") == dependent:
                return dep.get("links", [])
        raise LookupError(f"{dependent} is not among node {node}'s dependents")

    # what etcd holds
    def key(self, node: str, name: str) -> str:
        return f"{self.prefix}/nodes/{node}/containers/{name}"

    def raw(self) -> dict[str, str]:
        """Every key under the test's prefix with its value, read straight from etcd."""
        return self.etcd.range_prefix(self.prefix + "/")

    def records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{node: {name: record}} for every published container under the test's prefix."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        head = self.prefix + "/nodes/"
        for key, value in self.raw().items():
            if not key.startswith(head):
                continue
            node, _, rest = key[len(head) :].partition("/")
            kind, _, name = rest.partition("/")
            if kind == "containers":
                out.setdefault(node, {})[name] = json.loads(value)
        return out

    def record(self, node: str, name: str) -> dict[str, Any] | None:
        value = self.etcd.get(self.key(node, name))
        return None if value is None else json.loads(value)

    # waiting for this test's own daemons (another hostsyncd on the same engines, such as a
    # manual run, may write the same lines: a line alone proves little)
    def wait_record(self, node: str, name: str, ipv4: str | None = None,
                    timeout: float = 5) -> dict[str, Any]:  # fmt: skip
        """Until `node` publishes `name` (with this IPv4, if given); returns the record."""

        def found() -> dict[str, Any] | None:
            record = self.record(node, name)
            return record if record and (ipv4 is None or record.get("ipv4") == ipv4) else None

        return wait_until(found, timeout=timeout, what=f"{self.key(node, name)} "
                          f"(ipv4 {ipv4 or 'any'}) in etcd", show=self.raw)  # fmt: skip

    def wait_addresses(self, node: str, dependent: str, addresses: list[str],
                       timeout: float = 5) -> list[dict[str, Any]]:  # fmt: skip
        """Until node's state file shows these addresses for the dependent's links (all
        links' addresses together, in any order); returns its links."""

        def found() -> list[dict[str, Any]] | None:
            links = self.links_of(node, dependent)
            got = sorted(ip for link in links for ip in link.get("addresses") or [])
            return links if got == sorted(addresses) else None

        return wait_until(found, timeout=timeout, what=f"node {node}'s state: {dependent} "
                          f"-> {addresses}", show=lambda: self.state(node))  # fmt: skip

    def _pids(self) -> set[int]:
        return {d.pid for f in self.factories.values() for d in f.started}

    def cleanup(self, dump: bool) -> None:
        for node, factory in self.factories.items():
            if dump:
                print(f"===== node {node} =====")
            with contextlib.suppress(Exception):
                factory.cleanup(dump)
        if dump:
            with contextlib.suppress(Exception):
                print(f"--- etcd keys under {self.prefix} ---\n{json.dumps(self.raw(), indent=1)}")
            print(self.etcd.log_tail(lines=8))
            others = [p for p in _hostsyncd_processes() if p[0] not in self._pids()]
            if others:
                print("--- other hostsyncd daemons on this machine (they may write to the same "
                      "engines' containers) ---")
                print("\n".join(f"{pid}: {cmd}" for pid, cmd in others))
        with contextlib.suppress(Exception):
            self.etcd.delete_prefix(self.prefix + "/")


def _hostsyncd_processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                text = " ".join(part.decode(errors="replace") for part in cmd if part)
                if "hostsyncd" in text and " run" in text and "pytest" not in text:
                    found.append((int(entry.name), text))
    return found


@pytest.fixture
def nodes(etcd: Any, request: pytest.FixtureRequest, tmp_path: Path,
          prefix: str) -> Iterator[Nodes]:  # fmt: skip
    # Heal what an earlier test may have left down (a killed member, a stopped cluster).
    try:
        etcd.ensure_running()
    except Exception as exc:  # noqa: BLE001 - reported as a failure
        pytest.fail(f"etcd cluster did not come back: {exc}\n{etcd.log_tail()}", pytrace=False)
    n = Nodes(etcd, request, tmp_path, prefix)
    yield n
    n.cleanup(dump=_test_failed(request))


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    sock = Notify(tmp_path / "notify.sock")
    yield sock
    sock.close()
