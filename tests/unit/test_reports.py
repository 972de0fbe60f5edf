"""What the worker says and keeps about containers goes with them, and only with them."""

from __future__ import annotations

from typing import Any

from builders import NullLog, cid, ctr, net

from hostsyncd.cluster import Cluster
from hostsyncd.config import ClusterConfig
from hostsyncd.core.graph import Snapshot
from hostsyncd.problems import ProblemLog
from hostsyncd.reports import _SUBJECTS, Reports
from hostsyncd.state import LastWrite

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
    reports.forget({stays: None})
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
