"""The one work queue: due times, drifts that never outrank an event, and a rate-limited
requeue per file and reason (races in a moment, failures and fights backed off, success
forgetting the count)."""

from __future__ import annotations

from hostsyncd.core.workqueue import FIGHT_BURST, FIGHT_WINDOW, QUIET, Retry, WorkQueue


def test_keys_come_due_in_time_order_and_leave_when_taken() -> None:
    q = WorkQueue()
    q.add("b", 2.0)
    q.add("a", 1.0)
    q.add("b", 5.0)  # already due sooner: stays at 2
    assert q.next_due() == 1.0
    assert q.due(0.5) == []
    assert q.due(2.0) == ["a", "b"]
    assert q.take("a") is False and q.take("a") is None
    assert q.next_due() == 2.0
    q.take("b")
    assert q.next_due() is None and q.due(10.0) == []


def test_a_drift_waits_for_quiet_and_never_demotes_an_event() -> None:
    q = WorkQueue()
    q.drift("d", 0.0, closed=False)
    assert q.next_due() == QUIET
    q.drift("d", 0.05, closed=False)  # still being written: quiet from the last write
    assert q.next_due() == 0.05 + QUIET
    q.drift("d", 0.06, closed=True)  # closed: at once
    assert q.next_due() == 0.06
    assert q.take("d") is True
    q.add("e", 1.0)
    q.drift("e", 0.0, closed=True)
    assert q.take("e") is False  # an event's work, not a repair
    q.drift("f", 0.0, closed=True)
    q.add("f", 0.5)
    assert q.take("f") is False


def test_failures_back_off_from_the_first_delay_to_the_ceiling_and_success_resets() -> None:
    q = WorkQueue()
    delays = []
    for _ in range(8):
        delays.append(q.retry("k", 0.0, Retry.FAILED, first=2.0))
        q.take("k")
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert max(delays) == Retry.FAILED.ceiling
    q.done("k", Retry.FAILED)
    assert q.retry("k", 0.0, Retry.FAILED, first=2.0) == 2.0
    # A first delay beyond the ceiling (a long retry_interval) is kept, not cut.
    assert q.retry("long", 0.0, Retry.FAILED, first=600.0) == 600.0


def test_races_are_retried_in_a_moment_and_counted() -> None:
    q = WorkQueue()
    for n in range(1, 4):
        assert q.retry("k", 0.0, Retry.RACE, drift=True) == Retry.RACE.first
        assert q.attempts("k", Retry.RACE) == n
        assert q.take("k") is True  # a repair's retry is still a repair
    q.done("k", Retry.RACE)
    assert q.attempts("k", Retry.RACE) == 0


def test_a_retry_keeps_an_earlier_event() -> None:
    q = WorkQueue()
    q.add("k", 0.0)
    q.retry("k", 0.0, Retry.RACE, drift=True)
    assert q.next_due() == 0.0 and q.take("k") is False


def test_a_burst_of_repairs_makes_a_fight_that_is_backed_off_until_calm() -> None:
    q = WorkQueue()
    spread = [q.repaired("k", n * (FIGHT_WINDOW / FIGHT_BURST) * 1.5)
              for n in range(FIGHT_BURST)]
    assert not any(spread)  # as often, but over more than the window: no fight
    q = WorkQueue()
    became = [q.repaired("k", n * 0.01) for n in range(FIGHT_BURST)]
    assert became == [False] * (FIGHT_BURST - 1) + [True]
    assert q.fighting("k") and q.fighters() == {"k"}
    assert not q.repaired("k", 1.0)  # said once
    delays = []
    for _ in range(7):
        delays.append(q.retry("k", 0.0, Retry.FIGHT, drift=True))
        q.take("k")
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    q.drift("k", 0.0, closed=True)  # a fighter's writes do not queue it
    assert not q.queued("k")
    q.done("k", Retry.FIGHT)
    assert not q.fighting("k")


def test_forget_drops_everything_about_a_key_and_the_heap_stays_bounded() -> None:
    q = WorkQueue()
    for n in range(1000):
        q.add("k", float(1000 - n))  # each sooner: a new heap entry every time
    assert len(q._heap) <= 2 * len(q.keys()) + 64
    q.retry("k", 0.0, Retry.FAILED, first=1.0)
    q.forget("k")
    assert q.keys() == set() and q.next_due() is None
    assert q.attempts("k", Retry.FAILED) == 0


def test_keys_due_at_the_same_moment_or_sooner_come_first_by_time() -> None:
    q = WorkQueue()
    q.add("z", 0.0)
    q.add("a", 0.5)
    assert q.due(0.0) == ["z"]  # due exactly now is due
    assert q.due(0.5) == ["z", "a"]  # by due time, not by name


def test_a_retry_queues_the_key_unless_something_sooner_is_queued() -> None:
    q = WorkQueue()
    assert q.retry("k", 1.0, Retry.RACE) == Retry.RACE.first
    assert q.next_due() == 1.0 + Retry.RACE.first
    assert q.take("k") is False  # not a drift unless said
    q.retry("k", 1.0, Retry.FIGHT, drift=True)
    q.done("k", Retry.FIGHT)
    q.drift("k", 1.0, closed=False)  # a write without a close never brings it sooner
    assert q.next_due() == 1.5


def test_repairs_are_counted_per_key_in_a_sliding_window() -> None:
    q = WorkQueue()
    for n in range(FIGHT_BURST - 1):
        assert not q.repaired("a", 100.0 + n * 0.01)
        assert not q.repaired("b", 100.0 + n * 0.01)
    assert not q.fighters()  # 58 repairs, but 29 each
    q = WorkQueue()
    for n in range(FIGHT_BURST):  # slow at first: no fight...
        assert not q.repaired("k", 100.0 + n)
    became = [q.repaired("k", 200.0 + n * 0.01) for n in range(FIGHT_BURST)]
    assert any(became)  # ...then fast: the window slides
    q = WorkQueue()
    for _ in range(FIGHT_BURST - 1):
        q.repaired("k", 100.0)
    assert q.repaired("k", 100.0 + FIGHT_WINDOW)  # exactly the window: still a fight


def test_a_forgotten_fighter_is_no_fighter_and_the_rebuilt_heap_still_answers() -> None:
    q = WorkQueue()
    for n in range(FIGHT_BURST):
        q.repaired("k", n * 0.01)
    q.forget("k")
    assert q.fighters() == frozenset() and not q.fighting("k")
    most = 0
    for n in range(1000):
        q.add("j", float(1000 - n))
        most = max(most, len(q._heap))
    assert most <= 2 * len(q.keys()) + 64
    assert q.next_due() == 1.0 and q.due(1.0) == ["j"]


def test_the_heap_rebuilt_right_after_a_push_keeps_every_queued_key() -> None:
    q = WorkQueue()
    q.add("other", 500.0)
    pushes = 2 * 2 + 64  # with "j" there are 2 keys: the heap's 69th entry rebuilds it
    for n in range(pushes):
        q.add("j", 100.0 - n)
    assert len(q._heap) == 2  # rebuilt: one entry per queued key
    assert q.next_due() == 100.0 - (pushes - 1)
    q.take("j")
    assert q.next_due() == 500.0


def test_a_file_that_fails_for_days_keeps_its_ceiling() -> None:
    q = WorkQueue()
    for _ in range(5000):  # a write failing every 60 s for three and a half days
        delay = q.retry("k", 0.0, Retry.FAILED, first=2.0)
        q.take("k")
    assert delay == Retry.FAILED.ceiling


def test_the_fight_window_runs_from_the_oldest_of_the_last_burst() -> None:
    q = WorkQueue()
    times = [0.0] + [1.0 + n * 0.01 for n in range(FIGHT_BURST - 2)] + [FIGHT_WINDOW + 0.5]
    assert not any(q.repaired("k", t) for t in times)  # 30 repairs over 10.5 s
    # One more: the last 30 now span 9.6 s.
    assert q.repaired("k", FIGHT_WINDOW + 0.6)


def test_after_a_fight_ends_a_new_one_needs_a_whole_new_burst() -> None:
    q = WorkQueue()
    assert [q.repaired("k", n * 0.01) for n in range(FIGHT_BURST)][-1]
    q.done("k", Retry.FIGHT)
    again = [q.repaired("k", 1.0 + n * 0.01) for n in range(FIGHT_BURST)]
    assert again == [False] * (FIGHT_BURST - 1) + [True]


def test_due_answers_from_each_keys_latest_time_not_from_old_heap_entries() -> None:
    q = WorkQueue()
    q.add("moved", 1.0)
    q.take("moved")
    q.retry("moved", 1.0, Retry.FIGHT)  # now due at 1.5; its entry at 1.0 is stale
    q.add("gone", 1.0)
    q.forget("gone")
    assert q.due(1.2) == []
    assert q.due(1.5) == ["moved"]
