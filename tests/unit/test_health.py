"""Health-gated links: with links.health = "wait" (or a dependent's hostsyncd.health label),
a target with a healthcheck gives its lines only while healthy. The pure decisions, the
engine shapes they are read from, and what the daemon's loop does with a health event."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from builders import LINKS, cid, ctr, net

from hostsyncd.config import Config
from hostsyncd.core.graph import Problem, Snapshot, plan, plan_all, replan_started
from hostsyncd.core.links import health_wait
from hostsyncd.core.model import HEALTH_LABEL, Container, Endpoint
from hostsyncd.core.observed import ObservedState
from hostsyncd.core.reconcile import ROUTINE, reconcile
from hostsyncd.engine import (
    CONTAINER_ACTIONS,
    container_from_list,
    event_from_raw,
    health_from_list,
    healthcheck_from_inspect,
)
from hostsyncd.reconcile import Reconciler
from hostsyncd.state import dependent_view
from hostsyncd.views import graph_text
from hostsyncd.writer import HostsWriter

DB_EP = net("bridge", "10.0.0.2")


def db(health: str, state: str = "running") -> Container:
    return replace(ctr("db", DB_EP if state == "running" else net("bridge"), state=state),
                   health=health)


def web(health_label: str | None = None, links: str = "db") -> Container:
    labels = {HEALTH_LABEL: health_label} if health_label is not None else {}
    return ctr("web", net("bridge", "10.0.0.3"), links=links, labels=labels)


def lines_of(containers: list[Container], health: str, dependent: str = "web") -> list[str]:
    found = plan_all(Snapshot(containers), LINKS, health=health)[cid(dependent)]
    return [line.render() for line in found.lines()]


def problem_of(containers: list[Container], health: str) -> Problem | None:
    found = plan_all(Snapshot(containers), LINKS, health=health)[cid("web")]
    return found.links[0].problem


# -- the decision ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_health", "mode", "line"),
    [
        ("healthy", "wait", True),
        ("starting", "wait", False),
        ("unhealthy", "wait", False),
        ("", "wait", True),  # no healthcheck: not affected
        ("starting", "ignore", True),
        ("unhealthy", "ignore", True),
        ("healthy", "ignore", True),
    ],
)
def test_a_target_gives_its_line_by_health_and_mode(target_health: str, mode: str,
                                                    line: bool) -> None:
    got = lines_of([db(target_health), web()], mode)
    assert got == (["10.0.0.2\tdb"] if line else [])
    problem = problem_of([db(target_health), web()], mode)
    assert problem is (None if line else Problem.WAITING_HEALTH)


@pytest.mark.parametrize(
    ("label", "config", "wait"),
    [("wait", "ignore", True), ("ignore", "wait", False), ("WAIT", "ignore", True),
     (" ignore ", "wait", False), (None, "wait", True), (None, "ignore", False)],
)
def test_the_dependents_label_overrides_the_config_both_ways(
        label: str | None, config: str, wait: bool) -> None:
    containers = [db("unhealthy"), web(label)]
    assert lines_of(containers, config) == ([] if wait else ["10.0.0.2\tdb"])
    found = plan_all(Snapshot(containers), LINKS, health=config)[cid("web")]
    assert found.health_wait is wait
    assert found.health_error is None


@pytest.mark.parametrize("config", ["wait", "ignore"])
def test_an_invalid_label_falls_back_to_the_config_and_says_so(config: str) -> None:
    containers = [db("unhealthy"), web("yes please")]
    assert lines_of(containers, config) == ([] if config == "wait" else ["10.0.0.2\tdb"])
    found = plan_all(Snapshot(containers), LINKS, health=config)[cid("web")]
    assert found.health_error == (
        f"label hostsyncd.health='yes please' is not 'wait' or 'ignore'; using links.health "
        f"({config})")


def test_a_hostile_label_is_quoted_bounded_and_escaped() -> None:
    wait, error = health_wait("\n# BEGIN é" + "x" * 100_000, "ignore")
    assert wait is False
    assert error is not None
    assert len(error) < 200
    assert "\n" not in error and error.isascii()
    assert "..." in error
    # Padding does not make a valid value out of a long one.
    assert health_wait(" " * 100 + "wait", "ignore")[1] is not None
    assert health_wait(" wait ", "ignore") == (True, None)
    # As long as a quoted value is shown (40), a padded value is still read.
    assert health_wait("wait".center(40), "ignore") == (True, None)


def test_replicas_give_lines_only_for_the_healthy_ones() -> None:
    svc = {"project": "p", "service": "api"}
    ok = replace(ctr("p-api-1", net("bridge", "10.0.0.5"), **svc), health="healthy")
    bad = replace(ctr("p-api-2", net("bridge", "10.0.0.6"), **svc), health="unhealthy")
    dep = ctr("p-web-1", net("bridge", "10.0.0.3"), links="api", project="p")
    assert lines_of([ok, bad, dep], "wait", "p-web-1") == ["10.0.0.5\tapi p-api-1"]
    # Whichever replica comes first: an unhealthy one is passed over, not the end.
    first_bad = replace(ctr("p-api-0", net("bridge", "10.0.0.4"), **svc), health="starting")
    assert lines_of([first_bad, ok, dep], "wait", "p-web-1") == ["10.0.0.5\tapi p-api-1"]
    bad_too = replace(ok, health="starting")
    found = plan_all(Snapshot([bad_too, bad, dep]), LINKS, health="wait")[cid("p-web-1")]
    assert found.links[0].problem is Problem.WAITING_HEALTH


def test_waiting_for_health_is_a_routine_typed_skip_and_not_kept() -> None:
    snap = Snapshot([db("starting"), web()])
    result = reconcile(snap, {}, LINKS, keep=True, kept={}, health="wait")
    [skip] = result.skipped[cid("web")]
    assert skip.reason is Problem.WAITING_HEALTH
    assert Problem.WAITING_HEALTH in ROUTINE and skip.routine
    assert skip.message == "link db: waiting for health"
    # Keep mode keeps a stopped target's lines, not an unhealthy one's.
    healthy = reconcile(Snapshot([db("healthy"), web()]), {}, LINKS, keep=True, health="wait")
    assert healthy.kept[cid("web")]["db"]
    after = reconcile(Snapshot([db("unhealthy"), web()]), {}, LINKS, keep=True,
                      kept=healthy.kept, health="wait")
    assert b"10.0.0.2" not in after.blocks[cid("web")]
    assert after.kept[cid("web")] == {}


def test_a_started_target_with_a_healthcheck_starts_as_starting() -> None:
    stopped_hc = db("starting", state="exited")  # known to have one
    stopped_none = db("", state="exited")
    started = Endpoint("bridge", DB_EP.network_id, "10.0.0.9")
    # Even if the last word heard of it was healthy: every start resets the healthcheck.
    stopped_was_healthy = db("healthy", state="exited")
    for target, want in ((stopped_hc, []), (stopped_was_healthy, []),
                         (stopped_none, ["10.0.0.9\tdb"])):
        snap = Snapshot([target, web()])
        waiting = [plan(snap, web(), LINKS, "wait")]
        [new] = replan_started(snap, target, (started,), waiting, LINKS, "wait")
        assert [line.render() for line in new.lines()] == want


def test_views_show_waiting_for_health_and_the_bad_label() -> None:
    plans = plan_all(Snapshot([db("starting"), web("maybe")]), LINKS, health="wait")
    text = graph_text(plans.values())
    assert "!! db  unresolved: waiting for health" in text
    assert "xx label hostsyncd.health='maybe'" in text
    view = dependent_view(plans[cid("web")], None)
    assert view["links"][0]["problem"] == "waiting for health"
    assert view["health"] == "wait"
    assert any("hostsyncd.health" in err for err in view["invalid"])


# -- what the daemon believes ---------------------------------------------------------------


def test_observed_health_events_override_the_list_until_it_agrees() -> None:
    seen = ObservedState()
    seen.listed([db("starting"), web()], now=0.0)
    seen.health(cid("db"), "healthy", now=1.0)
    assert seen.snapshot().by_id[cid("db")].health == "healthy"
    seen.listed([db("starting"), web()], now=2.0)  # an older view: the event stands
    assert seen.snapshot().by_id[cid("db")].health == "healthy"
    seen.listed([db("healthy"), web()], now=3.0)  # agrees: the list rules again
    seen.listed([db("unhealthy"), web()], now=4.0)
    assert seen.snapshot().by_id[cid("db")].health == "unhealthy"


def test_a_restarted_target_is_starting_before_any_list_says_so() -> None:
    seen = ObservedState()
    seen.listed([db("healthy"), web()], now=0.0)
    seen.stopped(cid("db"), now=1.0)
    seen.connected(cid("db"), "db", Endpoint("bridge", DB_EP.network_id, "10.0.0.7"), now=1.1)
    target = seen.snapshot().by_id[cid("db")]
    assert (target.state, target.health) == ("running", "starting")
    # The list taken while it was stopped shows no health; it is still known to have one.
    seen.listed([db("", state="exited"), web()], now=2.0)
    assert seen.snapshot().by_id[cid("db")].health == "starting"
    # A container without a healthcheck stays without one across a restart.
    seen.listed([db(""), web()], now=3.0)
    other = ObservedState()
    other.listed([db(""), web()], now=0.0)
    other.stopped(cid("db"), now=1.0)
    other.connected(cid("db"), "db", DB_EP, now=1.1)
    assert other.snapshot().by_id[cid("db")].health == ""


def test_a_paused_target_keeps_its_last_health_and_a_stopped_one_starts_over() -> None:
    # The list's Status of a paused container says "(Paused)", nothing of health.
    seen = ObservedState()
    seen.listed([db("healthy"), web()], now=0.0)
    seen.listed([replace(db(""), state="paused"), web()], now=1.0)
    assert seen.snapshot().by_id[cid("db")].health == "healthy"
    assert lines_of(list(seen.snapshot()), "wait") == ["10.0.0.2\tdb"]
    # Its probes fail while paused: the engine says unhealthy, and that stands.
    seen.health(cid("db"), "unhealthy", now=2.0)
    seen.listed([replace(db(""), state="paused"), web()], now=3.0)
    assert seen.snapshot().by_id[cid("db")].health == "unhealthy"
    # Stopped, listed as such, then started (the list not yet caught up): starting.
    seen.listed([db("", state="exited"), web()], now=4.0)
    seen.connected(cid("db"), "db", DB_EP, now=5.0)
    target = seen.snapshot().by_id[cid("db")]
    assert (target.state, target.health) == ("running", "starting")
    assert lines_of(list(seen.snapshot()), "wait") == []


def test_what_is_known_about_healthchecks_goes_with_the_container() -> None:
    seen = ObservedState()
    seen.listed([db("healthy"), web()], now=0.0)
    seen.listed([web()], now=1.0)  # db removed
    seen.listed([db("", state="exited"), web()], now=2.0)  # a new db, same id in this test
    assert seen.snapshot().by_id[cid("db")].health == ""


# -- engine shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "health"),
    [
        ({"Status": "Up Less than a second (health: starting)"}, "starting"),
        ({"Status": "Up 2 seconds (healthy)"}, "healthy"),
        ({"Status": "Up 3 minutes (unhealthy)"}, "unhealthy"),
        ({"Status": "Up 3 minutes"}, ""),
        ({"Status": "Up 1 second (Paused)"}, ""),
        ({}, ""),
        # API 1.52 adds Health to the list, "none" without a healthcheck.
        ({"Status": "Up 2 seconds", "Health": {"Status": "healthy", "FailingStreak": 0}},
         "healthy"),
        ({"Status": "Up 2 seconds", "Health": {"Status": "none"}}, ""),
        ({"Status": "Up 2 seconds (healthy)", "Health": {"Status": "bogus"}}, ""),
    ],
)
def test_health_from_the_list(raw: dict[str, Any], health: str) -> None:
    assert health_from_list(raw) == health
    listed = container_from_list({"Id": cid("db"), "Names": ["/db"], "State": "running", **raw})
    assert listed.health == health


def test_a_stopped_container_has_no_health_in_the_list() -> None:
    listed = container_from_list({"Id": cid("db"), "Names": ["/db"], "State": "exited",
                                  "Status": "Exited (137) 1 second ago (healthy)"})
    assert listed.health == ""


@pytest.mark.parametrize(
    ("action", "health"),
    [("health_status: healthy", "healthy"), ("health_status: unhealthy", "unhealthy"),
     ("health_status: starting", "starting"), ("health_status: weird", ""),
     ("health_status", "")],
)
def test_health_status_events_carry_the_status(action: str, health: str) -> None:
    ev = event_from_raw({"Type": "container", "Action": action, "Actor": {"ID": cid("db")}})
    assert ev is not None
    assert (ev.action, ev.health) == ("health_status", health)


def test_the_event_filter_asks_for_health_and_no_exec_chatter() -> None:
    assert "health_status" in CONTAINER_ACTIONS
    # The engine matches a filter containing health_status by prefix: no action asked for
    # may be a prefix of an exec event's.
    for exec_action in ("exec_create: test -f /ok", "exec_start: test -f /ok", "exec_die"):
        assert not any(exec_action.startswith(a) for a in CONTAINER_ACTIONS)


@pytest.mark.parametrize(
    ("config", "has"),
    [({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}}, True),
     ({"Healthcheck": {"Test": ["NONE"]}}, False),
     ({"Healthcheck": None}, False), ({}, False), (None, False)],
)
def test_healthcheck_from_inspect(config: Any, has: bool) -> None:
    assert healthcheck_from_inspect({"Config": config}) is has


# -- the loop -------------------------------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.entries.append((level, event, kw))


class _Engine:
    def __init__(self, containers: list[Container], healthchecks: set[str]) -> None:
        self.containers = containers
        self.healthchecks = healthchecks
        self.asked: list[str] = []
        self.calls = 0
        self.podman = False  # a Docker engine: hosts files at <root>/<id>/hosts

    def list_containers(self, ids: Collection[str] | None = None) -> list[Container]:
        return [c for c in self.containers if ids is None or c.id in ids]

    def has_healthcheck(self, container_id: str) -> bool:
        self.asked.append(container_id)
        return container_id in self.healthchecks


def _loop(tmp_path: Path, containers: list[Container], healthchecks: set[str],
          health: str = "wait") -> tuple[Reconciler, _Engine, _Log]:
    for c in containers:
        (tmp_path / c.id).mkdir(exist_ok=True)
        (tmp_path / c.id / "hosts").write_bytes(b"127.0.0.1\tlocalhost\n")
    engine, log = _Engine(containers, healthchecks), _Log()
    config = Config.model_validate({"links": {"health": health}})
    rec = Reconciler(config, engine, HostsWriter(tmp_path), log)  # type: ignore[arg-type]
    rec.refresh()
    rec.reconcile(verify_all=True)
    return rec, engine, log


def test_a_health_event_writes_the_line_without_a_list_call(tmp_path: Path) -> None:
    rec, _, log = _loop(tmp_path, [db("starting"), web()], set())
    hosts = tmp_path / cid("web") / "hosts"
    assert b"10.0.0.2" not in hosts.read_bytes()
    # Said at info (routine), once, naming the dependent.
    waiting = [e for e in log.entries if "waiting for health" in str(e)]
    assert [e[0] for e in waiting] == ["info"]
    assert waiting[0][2]["container_name"] == "web"
    healthy = event_from_raw({"Type": "container", "Action": "health_status: healthy",
                              "Actor": {"ID": cid("db"), "Attributes": {"name": "db"}}})
    assert healthy is not None
    asked, freed = rec.apply_events([healthy])
    assert (bool(asked), freed) == (False, False)
    assert rec.reconcile().written == 1
    assert b"10.0.0.2\tdb\n" in hosts.read_bytes()
    unhealthy = replace(healthy, health="unhealthy")
    rec.apply_events([unhealthy])
    assert rec.reconcile().written == 1
    assert b"10.0.0.2" not in hosts.read_bytes()


def test_a_stopped_targets_healthcheck_is_asked_once_and_only_when_waited_for(
        tmp_path: Path) -> None:
    stopped = db("", state="exited")
    rec, engine, _ = _loop(tmp_path, [stopped, web()], {cid("db")})
    assert engine.asked == [cid("db")]
    assert rec.observed.snapshot().by_id[cid("db")].health == "starting"
    rec.refresh()
    rec.reconcile(verify_all=True)
    assert engine.asked == [cid("db")]  # once
    # Nobody waits for health: the engine is not asked.
    (tmp_path / "other").mkdir()
    _, engine2, _ = _loop(tmp_path / "other", [stopped, web()], {cid("db")}, health="ignore")
    assert engine2.asked == []


def test_a_bad_label_is_said_once_naming_the_container(tmp_path: Path) -> None:
    rec, _, log = _loop(tmp_path, [db("healthy"), web("soon")], set())
    rec.refresh()
    rec.reconcile(verify_all=True)
    said = [e for e in log.entries if "hostsyncd.health" in str(e)]
    assert len(said) == 1
    level, _, fields = said[0]
    assert level == "warning"
    assert fields["container_name"] == "web"
    # The config's value (wait) is used: db is healthy, so it has its line.
    assert b"10.0.0.2\tdb\n" in (tmp_path / cid("web") / "hosts").read_bytes()
