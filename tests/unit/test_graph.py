"""From containers to the lines each dependent's hosts file should hold."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from builders import LINKS as LABEL
from builders import cid, ctr, examples, net
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsyncd.core.graph import (
    DependentPlan,
    Problem,
    Snapshot,
    choose_endpoint,
    plan,
    plan_all,
    replan_started,
    resolve,
    waiting_dependents,
)
from hostsyncd.core.model import (
    Container,
    Endpoint,
    HostLine,
    LinkSpec,
)


def rendered(dep_plan: DependentPlan, **kwargs: Any) -> list[str]:
    return [line.render() for line in dep_plan.lines(**kwargs)]


def plan_for(containers: list[Container], dependent: str) -> DependentPlan:
    plans = plan_all(Snapshot(containers), LABEL)
    return plans[cid(dependent)]


# --- which dependents get plans ---------------------------------------------------------


def test_only_live_dependents_with_the_label_get_plans() -> None:
    db = ctr("db", net("n", "10.0.0.2"))
    containers = [
        db,
        ctr("running", net("n", "10.0.0.3"), links="db"),
        ctr("paused", net("n", "10.0.0.4"), links="db", state="paused"),
        ctr("restarting", net("n"), links="db", state="restarting"),
        ctr("exited", net("n"), links="db", state="exited"),
        ctr("created", net("n"), links="db", state="created"),
        ctr("dead", net("n"), links="db", state="dead"),
        ctr("removing", net("n"), links="db", state="removing"),
        ctr("nolabel", net("n", "10.0.0.5")),
        ctr("otherlabel", net("n", "10.0.0.6"), labels={"other.links": "db"}),
    ]
    plans = plan_all(Snapshot(containers), LABEL)
    assert set(plans) == {cid("running"), cid("paused"), cid("restarting")}
    for p in plans.values():
        assert rendered(p) == ["10.0.0.2\tdb"]


def test_empty_label_gives_a_plan_with_no_lines() -> None:
    p = plan_for([ctr("dep", links="")], "dep")
    assert p.links == ()
    assert p.lines() == []


def test_plan_returns_none_without_the_label() -> None:
    dep = ctr("dep")
    assert plan(Snapshot([dep]), dep, LABEL) is None


def test_spec_errors_are_reported_and_other_links_apply() -> None:
    p = plan_for(
        [ctr("db", net("n", "10.0.0.2")), ctr("dep", net("n"), links="db#evil,db:data")],
        "dep",
    )
    assert [e.spec for e in p.errors] == ["db#evil"]
    assert rendered(p) == ["10.0.0.2\tdata db"]


# --- line shapes ------------------------------------------------------------------------


def test_line_is_ip_tab_alias_when_alias_is_the_name() -> None:
    p = plan_for([ctr("db", net("n", "10.0.0.2")), ctr("dep", links="db")], "dep")
    assert rendered(p) == ["10.0.0.2\tdb"]
    assert p.lines() == [HostLine("10.0.0.2", ("db",))]


def test_line_with_alias_adds_the_target_name() -> None:
    p = plan_for([ctr("db", net("n", "10.0.0.2")), ctr("dep", links="db:database")], "dep")
    assert rendered(p) == ["10.0.0.2\tdatabase db"]


def test_global_ipv6_gets_a_second_line() -> None:
    db = ctr("db", net("n", "10.0.0.2", "fd00::2"))
    p = plan_for([db, ctr("dep", links="db:d")], "dep")
    assert rendered(p) == ["10.0.0.2\td db", "fd00::2\td db"]


def test_ipv6_only_endpoint() -> None:
    p = plan_for([ctr("db", net("n", "", "fd00::2")), ctr("dep", links="db")], "dep")
    assert rendered(p) == ["fd00::2\tdb"]


def test_lines_follow_label_order_and_appear_once() -> None:
    containers = [
        ctr("a", net("n", "10.0.0.1")),
        ctr("b", net("n", "10.0.0.2")),
        ctr("dep", links="b a b:b a@n"),
    ]
    assert rendered(plan_for(containers, "dep")) == ["10.0.0.2\tb", "10.0.0.1\ta"]


def test_target_name_that_is_not_a_host_name_is_left_out_of_the_line() -> None:
    # Compose replica names are chosen by compose, not checked by the label parser.
    containers = [
        ctr("weird..name", net("n", "10.0.0.2"), project="p", service="db"),
        ctr("dep", project="p", links="db"),
    ]
    assert rendered(plan_for(containers, "dep")) == ["10.0.0.2\tdb"]


# --- choose_endpoint --------------------------------------------------------------------


def test_choose_pinned_network_by_name_and_by_id() -> None:
    a, b = net("a", "10.1.0.2"), net("b", "10.2.0.2")
    assert choose_endpoint([a, b], [a], "b") == b
    assert choose_endpoint([a, b], [a], b.network_id) == b


def test_choose_pinned_network_not_there() -> None:
    a = net("a", "10.1.0.2")
    assert choose_endpoint([a], [a], "zzz") is Problem.NOT_ON_NETWORK


def test_choose_pinned_network_without_ip_is_not_usable() -> None:
    a, b = net("a", "10.1.0.2"), net("b")
    assert choose_endpoint([a, b], [b], "b") is Problem.NOT_ON_NETWORK


def test_choose_shared_network_first_by_name() -> None:
    a, b, c = net("a", "10.1.0.2"), net("b", "10.2.0.2"), net("c", "10.3.0.2")
    assert choose_endpoint([c, a, b], [net("c"), net("b")], None) == b
    assert choose_endpoint([c, a, b], [net("c")], None) == c


def test_choose_first_by_name_when_nothing_shared() -> None:
    a, b, c = net("a", "10.1.0.2"), net("b", "10.2.0.2"), net("c", "10.3.0.2")
    assert choose_endpoint([c, b, a], [net("z")], None) == a
    assert choose_endpoint([c, b, a], [], None) == a


def test_choose_ignores_endpoints_without_ip() -> None:
    a, b, c = net("a"), net("b", "10.2.0.2"), net("c", "10.3.0.2")
    # shared network a has no IP: the shared rule skips it; first usable by name is b
    assert choose_endpoint([a, b, c], [net("a")], None) == b
    assert choose_endpoint([a, c], [net("a")], None) == c


def test_choose_no_usable_endpoint() -> None:
    assert choose_endpoint([], [], None) is Problem.NO_ADDRESS
    assert choose_endpoint([net("a"), net("b")], [net("a")], None) is Problem.NO_ADDRESS


_NETS = ["alpha", "beta", "gamma", "delta"]


@st.composite
def endpoints_st(draw: st.DrawFn, with_ip: bool = True) -> list[Endpoint]:
    names = draw(st.lists(st.sampled_from(_NETS), unique=True, max_size=4))
    out = []
    for i, name in enumerate(names):
        has_ip = with_ip and draw(st.booleans())
        has_v6 = with_ip and draw(st.booleans())
        out.append(
            net(name, f"10.0.{i}.2" if has_ip else "", f"fd00::{i + 2:x}" if has_v6 else "")
        )
    return out


@settings(max_examples=examples(500), deadline=None, database=None)
@given(
    endpoints_st(),
    endpoints_st(),
    st.none() | st.sampled_from(_NETS) | st.sampled_from(_NETS).map(lambda n: cid("net:" + n)),
)
def test_choose_endpoint_matches_the_contract(
    target: list[Endpoint], dependent: list[Endpoint], pinned: str | None
) -> None:
    usable = sorted((e for e in target if e.ipv4 or e.ipv6), key=lambda e: e.network)
    got = choose_endpoint(target, dependent, pinned)
    if pinned is not None:
        matching = [e for e in usable if pinned in (e.network, e.network_id)]
        assert got == (matching[0] if matching else Problem.NOT_ON_NETWORK)
        return
    if not usable:
        assert got is Problem.NO_ADDRESS
        return
    mine = {e.network for e in dependent}
    shared = [e for e in usable if e.network in mine]
    assert got == (shared[0] if shared else usable[0])


def test_address_choice_through_resolve_uses_shared_network() -> None:
    db = ctr("db", net("back", "10.2.0.2"), net("front", "10.1.0.2"))
    dep = ctr("dep", net("front", "10.1.0.3"), links="db db:pinned@back")
    assert rendered(plan_for([db, dep], "dep")) == ["10.1.0.2\tdb", "10.2.0.2\tpinned db"]


def test_dependent_in_another_namespace_shares_through_its_owner() -> None:
    owner = ctr("owner", net("front", "10.1.0.3"))
    db = ctr("db", net("back", "10.2.0.2"), net("front", "10.1.0.2"))
    dep = ctr("dep", network_mode=f"container:{owner.id}", links="db")
    assert rendered(plan_for([owner, db, dep], "dep")) == ["10.1.0.2\tdb"]


# --- compose ----------------------------------------------------------------------------


def test_same_project_service_wins_over_container_name_and_every_replica_gets_a_line() -> None:
    containers = [
        ctr("db", net("n", "10.0.0.99")),  # a plain container named like the service
        ctr("p-db-2", net("n", "10.0.0.12"), project="p", service="db"),
        ctr("p-db-1", net("n", "10.0.0.11"), project="p", service="db"),
        ctr("p-db-3", net("n", "10.0.0.13"), project="p", service="db", state="exited"),
        ctr("dep", net("n", "10.0.0.5"), project="p", service="web", links="db"),
    ]
    p = plan_for(containers, "dep")
    assert rendered(p) == ["10.0.0.11\tdb p-db-1", "10.0.0.12\tdb p-db-2"]
    assert p.links[0].targets == ("p-db-1", "p-db-2")


def test_replica_order_is_by_name_whatever_the_input_order() -> None:
    replicas = [
        ctr(f"p-db-{i}", net("n", f"10.0.0.{i}"), project="p", service="db")
        for i in (3, 1, 2)
    ]
    dep = ctr("dep", project="p", links="db:data")
    for order in (replicas, replicas[::-1]):
        assert rendered(plan_for([*order, dep], "dep")) == [
            "10.0.0.1\tdata p-db-1",
            "10.0.0.2\tdata p-db-2",
            "10.0.0.3\tdata p-db-3",
        ]


def test_another_projects_service_is_never_chosen() -> None:
    containers = [
        ctr("q-db-1", net("n", "10.0.0.11"), project="q", service="db"),
        ctr("dep", net("n"), project="p", links="db"),
    ]
    p = plan_for(containers, "dep")
    assert p.links[0].problem is Problem.MISSING
    assert p.lines() == []


def test_another_projects_service_loses_to_a_plain_container_name() -> None:
    containers = [
        ctr("q-db-1", net("n", "10.0.0.11"), project="q", service="db"),
        ctr("db", net("n", "10.0.0.99")),
        ctr("dep", net("n"), project="p", links="db"),
    ]
    assert rendered(plan_for(containers, "dep")) == ["10.0.0.99\tdb"]


def test_dependent_without_project_never_uses_services() -> None:
    containers = [
        ctr("p-db-1", net("n", "10.0.0.11"), project="p", service="db"),
        ctr("dep", net("n"), links="db"),
    ]
    assert plan_for(containers, "dep").links[0].problem is Problem.MISSING


def test_same_project_container_name_still_works_when_no_service_matches() -> None:
    containers = [
        ctr("p-db-1", net("n", "10.0.0.11"), project="p", service="db"),
        ctr("dep", net("n"), project="p", links="p-db-1:one"),
    ]
    assert rendered(plan_for(containers, "dep")) == ["10.0.0.11\tone p-db-1"]


# --- network namespaces -----------------------------------------------------------------


@pytest.mark.parametrize("ref", ["id", "name", "prefix"])
def test_target_in_another_containers_namespace_uses_that_address(ref: str) -> None:
    owner = ctr("vpn", net("n", "10.0.0.7", "fd00::7"))
    joined = {"id": owner.id, "name": owner.name, "prefix": owner.id[:12]}[ref]
    app = ctr("app", network_mode=f"container:{joined}")
    dep = ctr("dep", net("n"), links="app")
    assert rendered(plan_for([owner, app, dep], "dep")) == ["10.0.0.7\tapp", "fd00::7\tapp"]


def test_target_in_namespace_with_alias_writes_the_targets_own_name() -> None:
    owner = ctr("vpn", net("n", "10.0.0.7"))
    app = ctr("app", network_mode="container:vpn")
    dep = ctr("dep", links="app:web")
    assert rendered(plan_for([owner, app, dep], "dep")) == ["10.0.0.7\tweb app"]


def test_target_in_namespace_of_a_stopped_container_has_no_line() -> None:
    owner = ctr("vpn", net("n", "10.0.0.7"), state="exited")
    app = ctr("app", network_mode="container:vpn")
    p = plan_for([owner, app, ctr("dep", links="app")], "dep")
    assert p.lines() == []
    # The target runs, but the namespace it lives in has no address: a stopped target.
    assert p.links[0].problem is Problem.NOT_RUNNING


def test_target_in_namespace_of_a_missing_container_has_no_line() -> None:
    app = ctr("app", network_mode="container:gone")
    p = plan_for([app, ctr("dep", links="app")], "dep")
    assert p.lines() == []
    assert p.links[0].problem is Problem.MISSING


def test_namespace_cycle_terminates_without_lines() -> None:
    a = ctr("a", network_mode="container:b")
    b = ctr("b", network_mode="container:a")
    p = plan_for([a, b, ctr("dep", links="a")], "dep")
    assert p.lines() == []
    # A cycle has no owner at its end, as if the namespace's owner were gone.
    assert p.links[0].problem is Problem.MISSING


def test_target_on_host_network_has_no_line() -> None:
    host = ctr("h", net("host"), network_mode="host")
    p = plan_for([host, ctr("dep", links="h")], "dep")
    assert p.links[0].problem is Problem.HOST_NETWORK
    assert p.lines() == []
    assert p.lines(keep_stopped=True, kept={"h": (HostLine("10.0.0.2", ("h",)),)}) == []


def test_target_joined_to_a_host_network_container_has_no_line() -> None:
    host = ctr("h", network_mode="host")
    app = ctr("app", network_mode="container:h")
    p = plan_for([host, app, ctr("dep", links="app")], "dep")
    assert p.links[0].problem is Problem.HOST_NETWORK


def test_target_with_no_ip_on_any_network() -> None:
    p = plan_for([ctr("db", net("n")), ctr("dep", links="db")], "dep")
    assert p.links[0].problem is Problem.NO_ADDRESS
    assert p.lines() == []


def test_target_not_on_pinned_network() -> None:
    p = plan_for([ctr("db", net("n", "10.0.0.2")), ctr("dep", links="db@other")], "dep")
    assert p.links[0].problem is Problem.NOT_ON_NETWORK
    assert p.lines() == []


# --- target states ----------------------------------------------------------------------


def test_paused_target_keeps_its_lines() -> None:
    db = ctr("db", net("n", "10.0.0.2"), state="paused")
    p = plan_for([db, ctr("dep", links="db")], "dep")
    assert p.links[0].resolved
    assert rendered(p) == ["10.0.0.2\tdb"]


@pytest.mark.parametrize("state", ["exited", "created", "dead", "restarting", "removing"])
def test_stopped_target_has_no_line(state: str) -> None:
    # An exited container may still be listed with its last network settings.
    db = ctr("db", net("n", "10.0.0.2"), state=state)
    p = plan_for([db, ctr("dep", links="db")], "dep")
    assert p.links[0].problem is Problem.NOT_RUNNING
    assert p.lines() == []


def test_missing_target_has_no_line() -> None:
    p = plan_for([ctr("dep", links="db")], "dep")
    assert p.links[0].problem is Problem.MISSING
    assert p.lines() == []


KEPT = {
    "db": (HostLine("10.0.0.2", ("db",)), HostLine("fd00::2", ("db",))),
    "data": (HostLine("10.0.0.3", ("data", "db")),),
    "other": (HostLine("10.0.0.4", ("other",)),),
}


def test_keep_stopped_carries_over_the_engines_last_lines_for_the_alias() -> None:
    p = plan_for([ctr("db", state="exited"), ctr("dep", links="db")], "dep")
    assert p.lines(keep_stopped=False, kept=KEPT) == []
    assert rendered(p, keep_stopped=True, kept=KEPT) == ["10.0.0.2\tdb", "fd00::2\tdb"]


def test_keep_stopped_carries_over_for_missing_target_too() -> None:
    p = plan_for([ctr("dep", links="db:data")], "dep")
    assert rendered(p, keep_stopped=True, kept=KEPT) == ["10.0.0.3\tdata db"]


def test_keep_stopped_does_not_paper_over_other_problems() -> None:
    p = plan_for([ctr("db", net("n")), ctr("dep", links="db")], "dep")
    assert p.links[0].problem is Problem.NO_ADDRESS
    assert p.lines(keep_stopped=True, kept=KEPT) == []


def test_keep_stopped_prefers_current_lines_when_target_runs() -> None:
    p = plan_for([ctr("db", net("n", "10.0.0.9")), ctr("dep", links="db")], "dep")
    assert rendered(p, keep_stopped=True, kept=KEPT) == ["10.0.0.9\tdb"]


def test_kept_lines_remember_what_the_engine_gave_and_only_for_targets_that_went() -> None:
    running = plan_for([ctr("db", net("n", "10.0.0.9")), ctr("dep", links="db x")], "dep")
    kept = running.kept_lines(None)
    assert kept == {"db": (HostLine("10.0.0.9", ("db",)),)}
    stopped = plan_for([ctr("db", net("n", "10.0.0.9"), state="exited"),
                        ctr("dep", links="db x")], "dep")
    assert stopped.kept_lines(kept) == kept  # the target went: its last lines stay
    no_address = plan_for([ctr("db", net("n")), ctr("dep", links="db x")], "dep")
    assert no_address.kept_lines(kept) == {}  # not a target that went: nothing kept
    assert stopped.kept_lines(None) == {}  # nothing known: nothing invented


# --- Snapshot ---------------------------------------------------------------------------


def test_snapshot_lookups() -> None:
    a = ctr("alpha")
    b = ctr("beta", project="p", service="s")
    c = ctr("gamma", project="p", service="s")
    snap = Snapshot([a, b, c])
    assert len(snap) == 3
    assert [x.id for x in snap] == [a.id, b.id, c.id]
    assert snap.find(a.id) is a
    assert snap.find("alpha") is a
    assert snap.find(a.id[:12]) is a
    assert snap.find(a.id[:11]) is None  # short prefixes are not ids
    assert snap.find("nope") is None
    assert snap.by_service["p", "s"] == [b, c]


def test_snapshot_ambiguous_prefix_finds_nothing() -> None:
    x = Container(id="abcdef012345" + "0" * 52, name="x", state="running")
    y = Container(id="abcdef012345" + "1" * 52, name="y", state="running")
    snap = Snapshot([x, y])
    assert snap.find("abcdef012345") is None
    assert snap.find("abcdef0123450") is x


def test_resolution_reports_network_and_targets() -> None:
    db = ctr("db", net("back", "10.2.0.2"))
    dep = ctr("dep", links="db")
    snap = Snapshot([db, dep])
    res = resolve(snap, dep, LinkSpec("db", "db"))
    assert res.resolved
    assert res.network == "back"
    assert res.targets == ("db",)


# --- the start fast path: re-planning only the dependents of one started target -----------


def _fleet() -> list[Container]:
    return [
        ctr("db", net("n"), state="exited"),  # stopped: its endpoint has no address
        ctr("cache", net("n", "10.0.0.3")),
        ctr("web", net("n", "10.0.0.4"), links="db:data,cache"),
        ctr("api", net("n", "10.0.0.5"), links="db db"),  # twice: still one dependent
        ctr("cron", net("n", "10.0.0.6"), links="cache"),  # waits for nothing
        ctr("ui", net("n", "10.0.0.7"), links="api", project="p", service="ui"),
    ]


def test_waiting_dependents_lists_each_waiting_dependent_once() -> None:
    snap = Snapshot(_fleet())
    waiting = waiting_dependents(snap, plan_all(snap, LABEL).values())
    assert waiting.keys() == {cid("db")}
    assert [p.dependent.name for p in waiting[cid("db")]] == ["web", "api"]


def test_replan_started_matches_a_full_plan_of_the_started_fleet() -> None:
    fleet = _fleet()
    snap = Snapshot(fleet)
    db = snap.by_id[cid("db")]
    waiting = waiting_dependents(snap, plan_all(snap, LABEL).values())[db.id]
    started = net("n", "10.0.0.9")
    fast = replan_started(snap, db, (started,), waiting, LABEL)
    after = Snapshot([ctr("db", started) if c.id == db.id else c for c in fleet])
    full = plan_all(after, LABEL)
    assert fast == [full[p.dependent.id] for p in waiting]
    assert rendered(fast[0]) == ["10.0.0.9\tdata db", "10.0.0.3\tcache"]
    # With a search domain, as the loop's plans have it.
    fast = replan_started(snap, db, (started,), waiting, LABEL, domain="corp")
    full = plan_all(after, LABEL, domain="corp")
    assert fast == [full[p.dependent.id] for p in waiting]
    assert "data.corp" in rendered(fast[0])[0]
    assert snap.by_id[db.id] is db  # the snapshot it started from is left alone


def test_snapshot_replaced_swaps_one_container_everywhere_it_is_indexed() -> None:
    a = ctr("a", net("n"), state="exited", project="p", service="s")
    b = ctr("b", net("n", "10.0.0.2"), project="p", service="s")
    snap = Snapshot([a, b])
    a2 = ctr("a", net("n", "10.0.0.3"), project="p", service="s")
    new = snap.replaced(a2)
    assert new.by_id[a.id] is a2 and new.by_name["a"] is a2
    assert new.by_service["p", "s"] == [a2, b]
    assert snap.by_service["p", "s"] == [a, b] and snap.by_name["a"] is a


def test_a_target_on_no_network_at_all_is_detached_not_without_address() -> None:
    # `--network none` has an endpoint without an address; a target disconnected from
    # every network has no endpoint at all.
    p = plan_for([ctr("db"), ctr("dep", links="db")], "dep")
    assert p.links[0].problem is Problem.DETACHED
    assert p.lines() == []
    none = plan_for([ctr("db", net("none")), ctr("dep", links="db")], "dep")
    assert none.links[0].problem is Problem.NO_ADDRESS


def test_keep_stopped_holds_the_lines_through_a_stop_that_disconnects_before_it_dies() -> None:
    """Docker 26 and newer release a stopping container's networks (network `disconnect`)
    before its `die`; 20.10 the other way round. Keep mode must hold the line through the
    moment the target is running on no network, or it is gone when the `die` comes."""
    from hostsyncd.core.observed import ObservedState

    db = ctr("db", net("n", "10.0.0.2"))
    dep = ctr("dep", net("n", "10.0.0.3"), links="db")
    observed = ObservedState()
    observed.listed([db, dep], now=0.0)
    first = plan_all(observed.snapshot(), LABEL)[cid("dep")]
    assert rendered(first) == ["10.0.0.2\tdb"]
    kept = first.kept_lines(None)

    observed.disconnected(cid("db"), cid("net:n"), now=1.0)  # 26+: first the disconnect
    p = plan_all(observed.snapshot(), LABEL)[cid("dep")]
    assert p.links[0].problem is Problem.DETACHED
    assert rendered(p, keep_stopped=True, kept=kept) == ["10.0.0.2\tdb"]
    assert rendered(p, keep_stopped=False, kept=kept) == []
    assert p.kept_lines(kept) == kept

    observed.stopped(cid("db"), now=1.01)  # then the die
    p = plan_all(observed.snapshot(), LABEL)[cid("dep")]
    assert p.links[0].problem is Problem.NOT_RUNNING
    assert rendered(p, keep_stopped=True, kept=kept) == ["10.0.0.2\tdb"]


def test_a_name_two_containers_hold_goes_to_the_other_when_its_holder_goes() -> None:
    """For a moment the observed state can show a removed container beside the one that
    took its name: the running one is meant, and the other once it goes."""
    running = ctr("x", net("n", "10.0.0.2"))
    old = replace(ctr("x", net("n"), state="exited"), id=cid("x-old"))
    snap = Snapshot([old, running])
    assert snap.by_name["x"] is running
    assert snap.updated({running.id: None}).by_name["x"] is old
    assert Snapshot([running, old]).updated({running.id: None}).by_name["x"] is old


def test_updated_takes_every_change_after_a_removal() -> None:
    a, b = ctr("a", net("n", "10.0.0.2")), ctr("b", net("n", "10.0.0.3"))
    b2 = ctr("b", net("n", "10.0.0.4"))
    new = Snapshot([a, b]).updated({a.id: None, b.id: b2})
    assert a.id not in new.by_id and new.by_name["b"] is b2
