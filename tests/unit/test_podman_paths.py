"""The reconciler on Podman: hosts files where the engine's HostsPath says, asked once per
container and forgotten with it; confined to the configured roots."""

from __future__ import annotations

from pathlib import Path

from builders import ListingEngine, NullLog, ctr, net

from hostsyncd.config import Config
from hostsyncd.reconcile import Reconciler
from hostsyncd.writer import HostsWriter

BASE = b"127.0.0.1\tlocalhost\n"


class PodmanEngine(ListingEngine):
    """Lists the test's containers and answers HostsPath like Podman: <run>/vfs-containers/
    <id>/userdata/hosts, counting the inspects."""

    def __init__(self, containers: list, runroot: Path) -> None:
        super().__init__(containers)
        self.podman = True
        self.runroot = runroot
        self.inspected: list[str] = []
        self.modes: dict[str, str] = {}  # container id -> NetworkMode, if not "bridge"

    def hosts_path(self, container_id: str) -> tuple[str, str] | None:
        self.inspected.append(container_id)
        if container_id not in {c.id for c in self.containers}:
            return None
        path = str(self.runroot / "vfs-containers" / container_id / "userdata" / "hosts")
        return path, self.modes.get(container_id, "bridge")


def _world(tmp_path: Path, roots: list[Path]) -> tuple[Reconciler, PodmanEngine, Path]:
    runroot = tmp_path / "run"
    db = ctr("db", net("n", "10.0.0.2"))
    web = ctr("web", net("n", "10.0.0.3"), links="db")
    for c in (db, web):
        userdata = runroot / "vfs-containers" / c.id / "userdata"
        userdata.mkdir(parents=True)
        (userdata / "hosts").write_bytes(BASE)
    engine = PodmanEngine([db, web], runroot)
    writer = HostsWriter(tmp_path / "unused", roots=roots or [runroot])
    rec = Reconciler(Config(), engine, writer, NullLog())  # type: ignore[arg-type]
    writer.locate = rec.paths.locate
    return rec, engine, runroot / "vfs-containers" / web.id / "userdata" / "hosts"


def test_writes_the_hosts_path_and_asks_once_per_container(tmp_path: Path) -> None:
    rec, engine, web_hosts = _world(tmp_path, [])
    rec.refresh()
    rec.reconcile(verify_all=True)
    assert b"10.0.0.2\tdb\n" in web_hosts.read_bytes()
    web = engine.containers[1].id
    assert engine.inspected == [web]
    rec.reconcile(verify_all=True)  # the second pass reads the file again, from the cache
    assert engine.inspected == [web]
    # The container goes: so does what was kept about its path.
    engine.containers = engine.containers[:1]
    rec.refresh()
    rec.reconcile(verify_all=True)
    assert web not in rec.paths


def test_a_hosts_path_outside_the_roots_is_refused_and_said(tmp_path: Path) -> None:
    rec, _, web_hosts = _world(tmp_path, [tmp_path / "elsewhere"])
    rec.refresh()
    result = rec.reconcile(verify_all=True)
    assert web_hosts.read_bytes() == BASE
    assert result.written == 0
    assert any("outside docker.hosts_roots" in str(entry) for entry in rec.problems.recent)


def test_a_container_sharing_another_network_is_refused_once_asked(tmp_path: Path) -> None:
    rec, engine, web_hosts = _world(tmp_path, [])
    web = engine.containers[1].id
    engine.modes[web] = f"container:{engine.containers[0].id}"
    rec.refresh()
    rec.reconcile(verify_all=True)
    rec.reconcile(verify_all=True)
    assert web_hosts.read_bytes() == BASE
    assert engine.inspected == [web]  # the refusal is cached too
    assert any("shares another container's network" in str(entry)
               for entry in rec.problems.recent)
