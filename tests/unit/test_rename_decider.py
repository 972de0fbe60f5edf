"""The decider takes a rename event's word over a list taken mid-rename: the engine lists
the renamed container under both names for a while, sometimes even in the list taken right
after the event, and a dependent of the old name must lose its line at once."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from builders import LINKS, ListingEngine, NullLog, cid, net

from hostsyncd.config import Config
from hostsyncd.core.model import Container
from hostsyncd.engine import EngineEvent
from hostsyncd.reconcile import Reconciler
from hostsyncd.writer import HostsWriter

BASE = b"127.0.0.1\tlocalhost\n"
DB_NET = net("bridge", "10.0.0.9")


def _dependent(name: str, links: str) -> Container:
    return Container(cid(name), name, "running", labels=MappingProxyType({LINKS: links}),
                     endpoints=(net("bridge", "10.0.0.4"),))


def _rename(new: str, old: str) -> EngineEvent:
    return EngineEvent("container", "rename", cid("db"),
                       attributes=MappingProxyType({"name": new, "oldName": f"/{old}"}))


def test_a_rename_event_beats_the_list_that_follows_it_with_both_names(tmp_path: Path) -> None:
    db = Container(cid("db"), "db", "running", endpoints=(DB_NET,))
    dependents = [_dependent("web", "db"), _dependent("ops", "db-away")]
    for c in (db, *dependents):
        (tmp_path / c.id).mkdir()
        (tmp_path / c.id / "hosts").write_bytes(BASE)
    engine = ListingEngine([db, *dependents])
    rec = Reconciler(Config.model_validate({}), engine, HostsWriter(tmp_path), NullLog())  # type: ignore[arg-type]
    rec.refresh()
    rec.reconcile(verify_all=True)
    web, ops = (tmp_path / cid("web") / "hosts"), (tmp_path / cid("ops") / "hosts")
    assert b"10.0.0.9\tdb\n" in web.read_bytes()

    # `docker rename db db-away`: the list taken after the event still has both names,
    # the old one first.
    engine.containers = [Container(cid("db"), "db", "running", endpoints=(DB_NET,),
                                   other_names=("db-away",)), *dependents]  # fmt: skip
    need_list, _ = rec.apply_events([_rename("db-away", "db")])
    assert need_list
    rec.refresh()
    rec.reconcile()
    assert b"10.0.0.9" not in web.read_bytes()
    assert b"10.0.0.9\tdb-away\n" in ops.read_bytes()

    # And back: again the list has both names, now the new one first.
    rec.apply_events([_rename("db", "db-away")])
    rec.refresh()
    rec.reconcile()
    assert b"10.0.0.9\tdb\n" in web.read_bytes()
    assert b"10.0.0.9" not in ops.read_bytes()
