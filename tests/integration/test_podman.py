"""hostsyncd against a real rootful Podman service (scripts/privpodman.py, Debian's 4.3.1).

Podman has no `--link`, and its networks here have no DNS: a dependent sees a target only
through the lines hostsyncd writes. What is read is what the container sees (`podman exec
dep cat /etc/hosts`), and where hostsyncd wrote is the engine's `HostsPath`, not
`<containers_root>/<id>/hosts`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory, finish_daemons, privengine

from .util import LINKS, block, line

pytestmark = pytest.mark.podman

OWNER = "hsdtest.owner"


class Pods:
    """Runs containers on the private Podman's network, removes them at teardown."""

    def __init__(self, podman: Any) -> None:
        self.podman = podman
        self.prefix = f"p{secrets.token_hex(3)}-"

    def name(self, short: str) -> str:
        return short if short.startswith(self.prefix) else self.prefix + short

    def run(self, short: str, labels: dict[str, str] | None = None,
            network: str | None = None) -> str:
        name = self.name(short)
        args = ["run", "-d", "--name", name, "--network", network or self.podman.network,
                "--label", f"{OWNER}={self.prefix}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        self.podman.podman(*args, privengine.DEFAULT_IMAGE, "sleep", "3600")
        return name

    def ip(self, short: str) -> str:
        return self.podman.out("inspect", self.name(short), "--format",
                               f"{{{{.NetworkSettings.Networks.{self.podman.network}"
                               ".IPAddress}}")

    def id(self, short: str) -> str:
        return self.podman.out("inspect", self.name(short), "--format", "{{.Id}}")

    def hosts_path(self, short: str) -> Path:
        return Path(self.podman.out("inspect", self.name(short), "--format", "{{.HostsPath}}"))

    def seen(self, short: str) -> str:
        """/etc/hosts as the container reads it."""
        return self.podman.out("exec", self.name(short), "cat", "/etc/hosts")

    def restart(self, short: str) -> None:
        self.podman.podman("restart", "-t", "0", self.name(short))

    def remove(self, short: str) -> None:
        self.podman.podman("rm", "-f", "-t", "0", self.name(short))

    def cleanup(self) -> None:
        # --depend: Podman refuses to remove a container whose network a sidecar shares
        # before the sidecar; this takes the sidecar with it, whichever comes first.
        ids = self.podman.out("ps", "-aq", "--filter", f"label={OWNER}={self.prefix}").split()
        if ids:
            # check=False: a sidecar may already be gone with its host; `left` is the check.
            self.podman.podman("rm", "-f", "-t", "0", "--depend", *ids, check=False)
        left = self.podman.out("ps", "-aq", "--filter", f"label={OWNER}={self.prefix}")
        assert not left, f"containers left behind: {left}"


@pytest.fixture
def pods(podman: Any) -> Iterator[Pods]:
    podman.ensure_running()  # cheap when it answers
    found = Pods(podman)
    yield found
    found.cleanup()


@pytest.fixture
def hsd(podman: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Starts hostsyncd pointed at the Podman socket, writes confined to its runroot."""
    factory = DaemonFactory(podman, tmp_path)

    def start(**extra: Any) -> Any:
        docker = {"hosts_roots": [str(podman.runroot)], **extra}
        return factory.start(resync_interval=30, extra={"docker": docker})

    yield start
    finish_daemons(factory, request)


def sees(pods: Pods, dep: str, target: str) -> Any:
    """A wait_until condition: the dependent reads exactly the target's current line."""
    def check() -> str | bool:
        text = pods.seen(dep)
        return text if block(text) == [line(pods.ip(target), pods.name(target))] else False
    return check


def test_seed_dependent_before_and_after_its_target(pods, hsd, wait_until):
    # Declared before its target exists, and after: both get the line.
    before = pods.run("before", labels={LINKS: pods.name("db")})
    d = hsd()
    db = pods.run("db")
    after = pods.run("after", labels={LINKS: db})
    for dep in (before, after):
        text = wait_until(sees(pods, dep, "db"), timeout=15, what=f"{dep} sees db",
                          show=lambda dep=dep: pods.seen(dep))
        # Podman's own lines stay, the block comes after them.
        assert text.startswith("127.0.0.1\tlocalhost\n")
        assert f"{pods.id(dep)[:12]} {dep}" in text
    # Written where the engine says, not <containers_root>/<id>/hosts.
    assert pods.hosts_path(after).read_text() == pods.seen(after) + "\n"
    assert block(pods.seen(db)) == []  # a target without links gets no block
    assert any(e.get("event") == "engine connected" and "podman" in str(e.get("version"))
               for e in d.logs())


def linked_and_seen(pods: Pods, hsd: Any, wait_until: Any) -> tuple[str, str]:
    """db and web linked to it, hostsyncd running, web seeing db's line: (db, web)."""
    db = pods.run("db")
    web = pods.run("web", labels={LINKS: db})
    hsd()
    wait_until(sees(pods, web, db), timeout=15, show=lambda: pods.seen(web))
    return db, web


def test_line_follows_a_target_restart_with_a_new_ip(pods, hsd, wait_until):
    db, web = linked_and_seen(pods, hsd, wait_until)
    old = pods.ip(db)
    pods.restart(db)
    assert pods.ip(db) != old  # CNI host-local hands out the next address on each start
    text = wait_until(sees(pods, web, db), timeout=15, show=lambda: pods.seen(web))
    assert old not in text


def test_line_follows_a_target_reconnected_to_its_network(pods, hsd, wait_until):
    # Podman's network events name the container by Actor.ID (Docker: the network); the
    # line must follow from them, well before the 30 s resync.
    db, web = linked_and_seen(pods, hsd, wait_until)
    old = pods.ip(db)
    pods.podman.podman("network", "disconnect", pods.podman.network, db)
    wait_until(lambda: block(pods.seen(web)) == [], timeout=15, what="line gone on disconnect",
               show=lambda: pods.seen(web))
    pods.podman.podman("network", "connect", pods.podman.network, db)
    assert pods.ip(db) != old
    wait_until(sees(pods, web, db), timeout=15, show=lambda: pods.seen(web))


def test_line_follows_a_recreated_target(pods, hsd, wait_until):
    db, web = linked_and_seen(pods, hsd, wait_until)
    old_ip, old_id = pods.ip(db), pods.id(db)
    pods.remove(db)
    wait_until(lambda: block(pods.seen(web)) == [], timeout=15, what="line gone with db",
               show=lambda: pods.seen(web))
    pods.run("db")
    assert pods.id(db) != old_id
    text = wait_until(sees(pods, web, db), timeout=15, show=lambda: pods.seen(web))
    assert old_ip not in text


def test_block_comes_back_after_the_dependent_restarts(pods, hsd, wait_until):
    db, web = linked_and_seen(pods, hsd, wait_until)
    pods.restart(web)  # Podman writes a fresh hosts file (a new inode) on every start
    wait_until(sees(pods, web, db), timeout=15, show=lambda: pods.seen(web))


def test_a_hosts_path_outside_the_roots_is_refused(pods, hsd, wait_until, tmp_path):
    db = pods.run("db")
    web = pods.run("web", labels={LINKS: db})
    before = pods.seen(web)
    d = hsd(hosts_roots=[str(tmp_path / "elsewhere")])

    def refused() -> list[dict[str, Any]]:
        return [e for e in d.logs() if e.get("container_name") == web
                and "outside docker.hosts_roots" in str(e)]

    wait_until(refused, timeout=15, what="a refusal naming the dependent")
    # A later pass that wants web's file changed (db restarts on a new address) is refused
    # again, and not said again.
    pods.restart(db)
    new_ip = pods.ip(db)
    state = Path(d.config).parent / "state.json"

    def planned() -> bool:
        views = json.loads(state.read_text())["dependents"]
        return any(v["name"] == web and new_ip in v["links"][0]["addresses"] for v in views)

    wait_until(planned, timeout=15, what="a pass giving web db's new address",
               show=state.read_text)
    assert len(refused()) == 1
    assert pods.seen(web) == before


def test_a_sidecar_sharing_a_network_namespace_is_refused(pods, hsd, wait_until):
    # Podman's list gives no NetworkMode, and the sidecar's HostsPath is its host's file:
    # a block written there for the sidecar would fight the host's own. Refused, said once.
    db = pods.run("db")
    host = pods.run("host", labels={LINKS: db})
    side = pods.run("side", labels={LINKS: f"{db}:other"}, network=f"container:{host}")
    d = hsd()
    wait_until(sees(pods, host, db), timeout=15, show=lambda: pods.seen(host))
    found = wait_until(lambda: [e for e in d.logs() if e.get("container_name") == side
                                and "shares another container's network" in str(e)],
                       timeout=15, what="a refusal naming the sidecar")
    assert len(found) == 1
    # Only the host's own block: nothing of the sidecar's.
    assert block(pods.seen(host)) == [line(pods.ip(db), db)]


def test_the_daemon_follows_a_restarted_podman_service(pods, hsd, wait_until):
    # The service is only the API: containers are conmon's children and keep running while
    # it is away. hostsyncd reconnects, resyncs, and follows events from the new service.
    db, web = linked_and_seen(pods, hsd, wait_until)
    service = pods.podman
    pid = service.pid()
    assert pid is not None
    service.stop()
    assert not service.ping()
    assert service.out("inspect", db, "--format", "{{.State.Running}}") == "true"
    service.ensure_running()
    assert service.pid() not in (None, pid)
    old = pods.ip(db)
    pods.restart(db)
    assert pods.ip(db) != old
    wait_until(sees(pods, web, db), timeout=20, show=lambda: pods.seen(web))
