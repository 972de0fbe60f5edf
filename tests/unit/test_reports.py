"""What the worker says and keeps about containers goes with them, and only with them."""

from __future__ import annotations

from builders import NullLog, cid

from hostsyncd.problems import ProblemLog
from hostsyncd.reports import _SUBJECTS, Reports
from hostsyncd.state import LastWrite


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
