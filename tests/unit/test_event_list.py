"""An event that needs the list call asks the engine about the containers it names (the
list's `id` filter), not the whole fleet, and the decider comes to the same files as with
the whole list. Many containers in one batch, an event naming none, and Podman list all."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from builders import LINKS, ListingEngine, NullLog, cid, net

from hostsyncd.config import Config
from hostsyncd.core.model import Container
from hostsyncd.engine import EngineEvent
from hostsyncd.reconcile import MAX_LISTED_IDS, Reconciler, ToList
from hostsyncd.writer import HostsWriter

BASE = b"127.0.0.1\tlocalhost\n"


def _world(tmp_path: Path, others: int = 50) -> tuple[Reconciler, ListingEngine, Path]:
    db = Container(cid("db"), "db", "running", endpoints=(net("bridge", "10.0.0.9"),))
    web = Container(cid("web"), "web", "running", labels=MappingProxyType({LINKS: "db"}),
                    endpoints=(net("bridge", "10.0.0.4"),))
    rest = [Container(cid(f"x{i}"), f"x{i}", "running",
                      endpoints=(net("bridge", f"10.0.1.{i}"),)) for i in range(others)]
    for c in (db, web, *rest):
        (tmp_path / c.id).mkdir()
        (tmp_path / c.id / "hosts").write_bytes(BASE)
    engine = ListingEngine([db, web, *rest])
    rec = Reconciler(Config.model_validate({}), engine, HostsWriter(tmp_path), NullLog())  # type: ignore[arg-type]
    rec.refresh()
    rec.reconcile(verify_all=True)
    return rec, engine, tmp_path / web.id / "hosts"


def _event(action: str, name: str) -> EngineEvent:
    return EngineEvent("container", action, cid(name) if name else "",
                       attributes=MappingProxyType({"name": name}))


def test_a_start_lists_the_started_container_alone(tmp_path: Path) -> None:
    rec, engine, hosts = _world(tmp_path)
    assert b"10.0.0.9\tdb\n" in hosts.read_bytes()
    # db restarted with a new address; another container changed too, without an event.
    engine.containers[0] = Container(cid("db"), "db", "running",
                                     endpoints=(net("bridge", "10.0.0.77"),))
    engine.containers[2] = Container(cid("x0"), "db", "running",
                                     endpoints=(net("bridge", "10.0.0.66"),))
    asked, freed = rec.apply_events([_event("start", "db")])
    assert (asked, freed) == (ToList(frozenset({cid("db")})), False)
    rec.refresh(asked)
    assert engine.asked[-1] == {cid("db")}
    assert rec.reconcile().written == 1
    assert b"10.0.0.77\tdb\n" in hosts.read_bytes()
    assert b"10.0.0.66" not in hosts.read_bytes()  # not asked: the resync's to find


def test_a_destroyed_container_that_the_filtered_list_leaves_out_is_gone(tmp_path: Path) -> None:
    rec, engine, hosts = _world(tmp_path)
    del engine.containers[0]
    asked, freed = rec.apply_events([_event("destroy", "db")])
    assert asked == ToList(frozenset({cid("db")})) and freed
    rec.reconcile()
    rec.refresh(asked)
    rec.reconcile()
    assert b"10.0.0.9" not in hosts.read_bytes()
    assert cid("db") not in rec.observed.snapshot().by_id


def test_many_containers_an_unnamed_one_or_podman_list_everyone(tmp_path: Path) -> None:
    rec, engine, _ = _world(tmp_path, others=MAX_LISTED_IDS + 1)
    many, _ = rec.apply_events([_event("pause", f"x{i}") for i in range(MAX_LISTED_IDS + 1)])
    assert many == ToList(everyone=True)
    at_most, _ = rec.apply_events([_event("pause", f"x{i}") for i in range(MAX_LISTED_IDS)])
    assert len(at_most.ids) == MAX_LISTED_IDS and not at_most.everyone
    rec.refresh(many)
    assert engine.asked[-1] is None
    unnamed, _ = rec.apply_events([_event("start", "")])
    assert unnamed == ToList(everyone=True)
    rec.refresh(unnamed)
    assert engine.asked[-1] is None
    engine.podman = True
    few, _ = rec.apply_events([_event("start", "db")])
    assert few == ToList(frozenset({cid("db")}))
    rec.refresh(few)
    assert engine.asked[-1] is None


def test_the_daemons_own_writes_are_no_work_and_others_are(tmp_path: Path) -> None:
    import time

    from hostsyncd.watcher import Drift

    rec, _, hosts = _world(tmp_path, others=2)
    web = hosts.parent.name
    # The write the pass just made comes back from inotify: a modify, then a close.
    rec.drifted([Drift(web, closed=False), Drift(web, closed=True)])
    assert not rec.queue.queued(web)
    time.sleep(0.02)
    hosts.write_bytes(hosts.read_bytes().replace(b"10.0.0.9\tdb\n", b""))  # someone else
    rec.drifted([Drift(web, closed=False), Drift(web, closed=True)])
    assert rec.queue.queued(web)
    assert rec.repair().written == 1
    assert b"10.0.0.9\tdb\n" in hosts.read_bytes()
    rec.drifted([Drift(web, closed=True)])  # that repair's own write
    assert not rec.queue.queued(web)


def test_a_resolved_connect_is_written_before_the_list_that_a_start_behind_it_asks_for(
        tmp_path: Path) -> None:
    """Docker 28 sends a start right behind the connect: both reach the loop in one batch.
    The connect's endpoint (resolved by the engine edge) is written first; the start's list
    call comes after."""
    rec, engine, hosts = _world(tmp_path)
    moved = net("bridge", "10.0.0.77")
    connect = EngineEvent("network", "connect", cid("db"), moved.network_id,
                          endpoint=moved, member_name="db")
    lists = len(engine.asked)
    asked, first = rec.apply_events([connect, _event("start", "db")])
    assert first and asked == ToList(frozenset({cid("db")}))
    assert rec.reconcile().written == 1
    assert len(engine.asked) == lists  # before any list call
    assert b"10.0.0.77\tdb\n" in hosts.read_bytes()
    # A connect the edge could not resolve is listed first, like a start.
    asked, first = rec.apply_events([EngineEvent("network", "connect", cid("db"),
                                                 moved.network_id)])
    assert not first and asked == ToList(frozenset({cid("db")}))
