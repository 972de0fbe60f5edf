"""What the worker says and keeps about containers goes with them, and only with them; an
event's pass looks only at the containers it changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builders import ListingEngine, NullLog, cid, ctr, net

from hostsyncd.cluster import Cluster
from hostsyncd.config import ClusterConfig, Config
from hostsyncd.core.graph import Snapshot
from hostsyncd.engine import EngineEvent
from hostsyncd.problems import ProblemLog
from hostsyncd.reconcile import Reconciler
from hostsyncd.reports import _SUBJECTS, Reports
from hostsyncd.state import LastWrite
from hostsyncd.writer import HostsWriter

PUBLISH = "hostsyncd.publish"


def test_forget_drops_every_subject_and_last_write_of_a_gone_container_only() -> None:
    problems = ProblemLog(NullLog())
    reports = Reports(problems, NullLog())
    gone, stays = cid("gone"), cid("stays")
    for container in (gone, stays):
        reports.last_write[container] = LastWrite(0.0, ["10.0.0.2\tdb"], [])
        for kind in _SUBJECTS:
            problems.add(f"{container}/{kind}", "k", f"{kind} problem")
    problems.add("engine", "call", "not about a container")
    reports.forget([gone])
    assert reports.held() == {stays}
    assert set(reports.last_write) == {stays}
    assert problems.subjects() == {stays}
    assert problems.counts()["engine"] == 1
    # What was said about the one that stays is all still open, and the engine's.
    assert sum(problems.counts().values()) == len(_SUBJECTS) + 1


def test_a_snapshot_is_published_once_and_its_unpublishable_containers_said_once() -> None:
    db = ctr("db", net("n", "10.0.0.2"), labels={PUBLISH: "true"})
    bare = ctr("bare", net("n"), labels={PUBLISH: "true"})
    cluster = Cluster(ClusterConfig(node="a"), lambda: None, NullLog())  # not started
    snapshot = Snapshot([db, bare])
    problems = cluster.publish_from(snapshot)
    assert problems == {bare.id: "not published: no address on any network"}
    assert set(cluster._desired) == {"db"}
    assert cluster.publish_from(snapshot) is None  # a pass on file writes alone: no work

    said: list[str] = []

    class Log(NullLog):
        def warning(self, message: str, **fields: Any) -> None:
            said.append(f"{fields['container_name']}: {message}")

    log = ProblemLog(Log())
    reports = Reports(log, NullLog())
    reports.unpublishable(snapshot, problems)
    reports.unpublishable(snapshot, problems)
    assert said == ["bare: not published: no address on any network"]
    later = Snapshot([db, ctr("bare", net("n", "10.0.0.3"), labels={PUBLISH: "true"})])
    again = cluster.publish_from(later)
    assert again == {} and set(cluster._desired) == {"db", "bare"}
    reports.unpublishable(later, again)
    assert log.subjects() == set()  # published now: nothing open about it


def _worker(tmp_path: Path) -> tuple[Reconciler, ListingEngine]:
    db = ctr("db", net("n", "10.0.0.2"))
    web = ctr("web", net("n", "10.0.0.3"), links="db nope")  # nope: a link left waiting
    api = ctr("api", net("n", "10.0.0.4"), links="db")
    for c in (db, web, api):
        (tmp_path / c.id).mkdir()
        (tmp_path / c.id / "hosts").write_bytes(b"127.0.0.1\tlocalhost\n")
    engine = ListingEngine([db, web, api])
    rec = Reconciler(Config(), engine, HostsWriter(tmp_path), NullLog())  # type: ignore[arg-type]
    rec.refresh()
    rec.reconcile(verify_all=True)
    return rec, engine


def _removed(rec: Reconciler, engine: ListingEngine, name: str) -> None:
    engine.containers = [c for c in engine.containers if c.name != name]
    asked, _ = rec.apply_events([EngineEvent("container", "destroy", cid(name))])
    rec.refresh(asked)
    rec.reconcile()


def test_an_events_pass_forgets_everything_kept_about_a_removed_dependent(
    tmp_path: Path,
) -> None:
    rec, engine = _worker(tmp_path)
    web = cid("web")
    assert web in rec.last_write and web in rec.problems.subjects() and rec.writer.as_left(web)
    rec.queue.add(web, 1e9)
    _removed(rec, engine, "web")
    assert rec._decided is not None and rec._decided.replanned is not None  # not a sweep
    assert web not in rec.last_write
    assert web not in rec.problems.subjects()
    assert web not in rec._applied and not rec.queue.queued(web)
    assert not rec.writer.as_left(web)  # the writer's memory of the file went too
    assert cid("api") in rec.last_write and cid("api") in rec._applied  # the others stay


def test_what_a_late_report_kept_about_a_removed_container_goes_at_the_next_full_pass(
    tmp_path: Path,
) -> None:
    # A fast-path write reported after its file's owner was removed: no event's pass
    # names that container again, so the resync's sweep is what forgets it.
    rec, engine = _worker(tmp_path)
    ghost = cid("ghost")
    rec.reports.last_write[ghost] = LastWrite(0.0, [], [])
    rec.problems.add(f"{ghost}/file", "write", "failed")
    _removed(rec, engine, "api")
    assert ghost in rec.last_write  # an event's pass looks only at what it changed
    rec.reconcile(verify_all=True)
    assert ghost not in rec.last_write and ghost not in rec.problems.subjects()
