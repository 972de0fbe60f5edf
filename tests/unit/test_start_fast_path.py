"""The start fast path: Docker's rebuild of a stopped target's hosts file, seen on the
watcher's thread, is written straight into the files of the dependents waiting for it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hostsyncd.config import Config
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.reconcile import Drift, EarlyStart, Reconciler
from hostsyncd.writer import HostsWriter

LABEL = "hostsyncd.links"
BASE = b"127.0.0.1\tlocalhost\n"


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class _Log:
    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


class _Engine:
    def __init__(self, containers: list[Container]) -> None:
        self.containers = containers
        self.calls = 0

    def list_containers(self) -> list[Container]:
        return list(self.containers)


def _ctr(name: str, ip: str, state: str = "running", links: str | None = None) -> Container:
    labels = {LABEL: links} if links is not None else {}
    return Container(id=cid(name), name=name, state=state, labels=MappingProxyType(labels),
                     endpoints=(Endpoint("bridge", cid("net"), ip),))


def _setup(tmp_path: Path, db_hosts: bytes = BASE) -> tuple[Reconciler, Path, Path]:
    containers = [_ctr("db", "", state="exited"), _ctr("web", "10.0.0.4", links="db")]
    for c in containers:
        (tmp_path / c.id).mkdir()
        (tmp_path / c.id / "hosts").write_bytes(db_hosts if c.name == "db" else BASE)
    rec = Reconciler(Config(), _Engine(containers), HostsWriter(tmp_path), _Log())  # type: ignore[arg-type]
    rec.refresh()
    rec.reconcile(verify_all=True)
    assert rec.stopped_targets == {cid("db")}
    return rec, tmp_path / cid("db") / "hosts", tmp_path / cid("web") / "hosts"


def _early(rec: Reconciler, container_id: str) -> EarlyStart | None:
    hints = rec.file_written(container_id, True)
    assert not any(isinstance(h, Drift) for h in hints)  # a stopped target's file: no Drift
    return hints[0] if hints else None


def test_the_own_entry_after_a_rebuild_is_written_to_the_waiting_dependents(
    tmp_path: Path,
) -> None:
    rec, db_file, web_file = _setup(tmp_path)
    db_file.write_bytes(BASE)  # the first half of Docker's rebuild: no own entry yet
    assert _early(rec, cid("db")) is None
    db_file.write_bytes(BASE + f"10.0.0.9\t{cid('db')[:12]}\n".encode())
    early = _early(rec, cid("db"))
    assert early is not None
    assert early.endpoint.ipv4 == "10.0.0.9"
    assert [w.plan.dependent.name for w in early.writes] == ["web"]
    assert b"10.0.0.9\tdb\n" in web_file.read_bytes()
    # Once is enough: Docker's close of the same file writes nothing more.
    assert _early(rec, cid("db")) is None
    # The loop believes it, counts it, and its next pass agrees with what was written.
    rec.started(early)
    assert rec.writes == 1
    assert rec.reconcile().written == 0
    assert rec.stopped_targets == set()
    assert b"10.0.0.9\tdb\n" in web_file.read_bytes()


def test_the_own_entry_of_the_last_run_is_not_trusted(tmp_path: Path) -> None:
    """A stopped container's file still holds the entry of its last run."""
    old = BASE + f"10.0.0.2\t{cid('db')[:12]}\n".encode()
    rec, db_file, web_file = _setup(tmp_path, db_hosts=old)
    db_file.write_bytes(old)
    assert _early(rec, cid("db")) is None
    assert web_file.read_bytes() == BASE


def test_files_of_running_containers_take_no_fast_path(tmp_path: Path) -> None:
    rec, _, web_file = _setup(tmp_path)
    web_file.write_bytes(BASE)
    assert rec.file_written(cid("web"), False) == [Drift(cid("web"), False)]
    assert rec.file_written(cid("nothing"), True) == [Drift(cid("nothing"), True)]


def test_a_rebuild_read_only_once_finished_is_known_by_its_new_own_entry(
    tmp_path: Path,
) -> None:
    """On a loaded machine the watcher's thread may read the file only after both halves
    of Docker's rebuild: an own entry other than the one there when db stopped is new."""
    rec, db_file, web_file = _setup(tmp_path)
    db_file.write_bytes(BASE + f"10.0.0.9\t{cid('db')[:12]}\n".encode())
    assert _early(rec, cid("db")) is not None
    assert b"10.0.0.9\tdb\n" in web_file.read_bytes()
    assert _early(rec, cid("db")) is None  # the rest of the same rebuild


def test_a_later_start_with_the_same_address_takes_the_fast_path_again(
    tmp_path: Path,
) -> None:
    rec, db_file, web_file = _setup(tmp_path)
    own = BASE + f"10.0.0.9\t{cid('db')[:12]}\n".encode()
    db_file.write_bytes(BASE)
    assert _early(rec, cid("db")) is None
    db_file.write_bytes(own)
    early = _early(rec, cid("db"))
    assert early is not None
    # db stops again (the loop sees it and passes), then starts with the same address.
    rec.started(early)
    rec.reconcile()
    rec.observed.stopped(cid("db"), rec.clock())
    rec.refresh()  # the list a die brings: db exited, still on its network
    rec.reconcile()
    assert b"10.0.0.9" not in web_file.read_bytes()
    db_file.write_bytes(BASE)
    assert _early(rec, cid("db")) is None
    db_file.write_bytes(own)
    assert _early(rec, cid("db")) is not None
    assert b"10.0.0.9\tdb\n" in web_file.read_bytes()
