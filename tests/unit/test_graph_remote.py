"""Links to containers that other cluster nodes publish: `node/target` specs and bare names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from builders import LINKS as LABEL
from builders import cid, ctr, net

from hostsyncd.core.graph import (
    GONE,
    DependentPlan,
    Problem,
    Snapshot,
    plan,
    plan_all,
    waiting_dependents,
)
from hostsyncd.core.model import Container, HostLine
from hostsyncd.core.observed import ObservedState
from hostsyncd.core.records import parse_record, record_key

PREFIX = "/hostsyncd"
ME = "a"


def remote(node: str, name: str, ipv4: str = "", ipv6: str = "",
           network: str = "macvlan0") -> Container:
    """A remote record as the cluster edge hands it over: parsed from its JSON."""
    value = json.dumps({"id": cid(f"{node}:{name}"), "name": name, "node": node,
                        "network": network, "ipv4": ipv4, "ipv6": ipv6,
                        "networks": [network]}).encode()
    found = parse_record(PREFIX, record_key(PREFIX, node, name), value)
    assert isinstance(found, Container), found
    return found


WEB_NET = net("bridge", "10.0.0.3")


def web(links: str, project: str | None = None) -> Container:
    return ctr("web", WEB_NET, links=links, project=project,
               service="web" if project else None)


def plan_of(dependent: Container, others: list[Container], recs: list[Container],
            node: str | None = ME, bare: bool = False) -> DependentPlan:
    found = plan(Snapshot([dependent, *others], recs, node, bare), dependent, LABEL)
    assert found is not None
    return found


def web_plan(snapshot: Snapshot, links: str = "b/db") -> DependentPlan:
    found = plan(snapshot, web(links), LABEL)
    assert found is not None
    return found


def rendered(dep_plan: DependentPlan, **kwargs: Any) -> list[str]:
    return [line.render() for line in dep_plan.lines(**kwargs)]


# --- node/target ------------------------------------------------------------------------


def test_node_target_resolves_to_that_nodes_record() -> None:
    p = plan_of(web("b/db"), [], [remote("b", "db", "192.0.2.7")])
    (link,) = p.links
    assert link.resolved
    assert link.targets == ("b/db",)
    assert link.network == "macvlan0"
    assert rendered(p) == ["192.0.2.7\tdb"]


def test_node_target_with_alias_names_the_alias_then_the_target() -> None:
    p = plan_of(web("b/db:database"), [], [remote("b", "db", "192.0.2.7", "2001:db8::7")])
    assert rendered(p) == ["192.0.2.7\tdatabase db", "2001:db8::7\tdatabase db"]


def test_node_target_picks_the_named_node_among_several() -> None:
    recs = [remote("b", "db", "192.0.2.7"), remote("c", "db", "192.0.2.8")]
    assert rendered(plan_of(web("c/db"), [], recs)) == ["192.0.2.8\tdb"]
    assert rendered(plan_of(web("b/db"), [], recs)) == ["192.0.2.7\tdb"]


def test_node_target_ignores_a_local_container_of_that_name() -> None:
    local = ctr("db", net("bridge", "10.0.0.2"))
    p = plan_of(web("b/db"), [local], [remote("b", "db", "192.0.2.7")])
    assert rendered(p) == ["192.0.2.7\tdb"]


@pytest.mark.parametrize("recs", [
    [],
    [remote("c", "db", "192.0.2.8")],  # another node has it
    [remote("b", "cache", "192.0.2.9")],  # b has something else
])
def test_node_target_without_that_record_is_not_published(recs: list[Container]) -> None:
    p = plan_of(web("b/db"), [ctr("db", net("bridge", "10.0.0.2"))], recs)
    (link,) = p.links
    assert link.problem is Problem.NOT_PUBLISHED
    assert link.lines == ()
    assert rendered(p) == []


@pytest.mark.parametrize("spec", ["b/db", "b/db:x", "b/db@macvlan0", "a/db"])
def test_node_specs_with_the_cluster_off_are_no_cluster(spec: str) -> None:
    local = ctr("db", net("bridge", "10.0.0.2"))
    p = plan_of(web(spec), [local], [remote("b", "db", "192.0.2.7")], node=None)
    (link,) = p.links
    assert link.problem is Problem.NO_CLUSTER
    assert rendered(p) == []


def test_own_node_spec_resolves_the_local_container() -> None:
    local = ctr("db", net("bridge", "10.0.0.2"))
    recs = [remote("b", "db", "192.0.2.7"), remote(ME, "db", "192.0.2.99")]
    p = plan_of(web("a/db"), [local], recs)
    (link,) = p.links
    assert link.resolved
    assert link.targets == ("db",)
    assert rendered(p) == ["10.0.0.2\tdb"]


def test_own_node_spec_without_a_local_container_is_missing() -> None:
    p = plan_of(web("a/db"), [], [remote("b", "db", "192.0.2.7")])
    assert p.links[0].problem is Problem.MISSING


def test_own_node_spec_of_a_stopped_local_container_is_not_running() -> None:
    local = ctr("db", net("bridge"), state="exited")
    p = plan_of(web("a/db"), [local], [remote("b", "db", "192.0.2.7")])
    assert p.links[0].problem is Problem.NOT_RUNNING


# --- bare names -------------------------------------------------------------------------


@pytest.mark.parametrize("bare", [False, True])
def test_a_local_bare_name_wins_over_remote(bare: bool) -> None:
    local = ctr("db", net("bridge", "10.0.0.2"))
    p = plan_of(web("db"), [local], [remote("b", "db", "192.0.2.7")], bare=bare)
    assert p.links[0].targets == ("db",)
    assert rendered(p) == ["10.0.0.2\tdb"]


@pytest.mark.parametrize("state", ["exited", "created", "dead"])
@pytest.mark.parametrize("bare", [False, True])
def test_a_stopped_local_bare_name_still_wins_over_remote(bare: bool, state: str) -> None:
    local = ctr("db", net("bridge"), state=state)
    p = plan_of(web("db"), [local], [remote("b", "db", "192.0.2.7")], bare=bare)
    assert p.links[0].problem is Problem.NOT_RUNNING
    assert rendered(p) == []


def test_by_default_a_bare_name_never_resolves_to_a_remote_record() -> None:
    recs = [remote("b", "db", "192.0.2.7")]
    p = plan_of(web("db, b/db:viab"), [], recs)
    bare, named = p.links
    assert bare.problem is Problem.BARE_REMOTE and bare.lines == ()
    assert "node/target" in bare.problem.value
    assert named.resolved  # node/target always works
    assert rendered(p) == ["192.0.2.7\tviab db"]


def test_by_default_a_second_publisher_does_not_touch_a_bare_link() -> None:
    # Without the option nothing remote is ambiguous with a bare name: it never looks.
    local = ctr("db", net("bridge", "10.0.0.2"))
    recs = [remote("b", "db", "192.0.2.7"), remote("c", "db", "192.0.2.8")]
    assert rendered(plan_of(web("db"), [local], recs)) == ["10.0.0.2\tdb"]
    assert plan_of(web("db"), [], recs).links[0].problem is Problem.BARE_REMOTE


def test_removing_the_local_target_does_not_hand_the_bare_name_to_another_node() -> None:
    recs = [remote("b", "db", "192.0.2.7")]
    before = plan_of(web("db"), [ctr("db", net("bridge", "10.0.0.2"))], recs)
    assert rendered(before) == ["10.0.0.2\tdb"]
    after = plan_of(web("db"), [], recs)
    assert rendered(after) == []
    assert after.links[0].problem is Problem.BARE_REMOTE


def test_with_the_option_a_bare_name_not_local_resolves_to_the_one_remote_record() -> None:
    p = plan_of(web("db:data"), [], [remote("b", "db", "192.0.2.7"),
                                     remote("c", "cache", "192.0.2.9")], bare=True)
    (link,) = p.links
    assert link.resolved
    assert link.targets == ("b/db",)
    assert rendered(p) == ["192.0.2.7\tdata db"]


def test_with_the_option_a_bare_name_published_by_two_nodes_is_ambiguous() -> None:
    recs = [remote("c", "db", "192.0.2.8"), remote("b", "db", "192.0.2.7")]
    p = plan_of(web("db"), [], recs, bare=True)
    (link,) = p.links
    assert link.problem is Problem.AMBIGUOUS
    assert link.targets == ("b/db", "c/db")
    assert link.lines == ()
    assert rendered(p) == []
    assert rendered(p, keep_stopped=True, kept={"db": (HostLine("192.0.2.7", ("db",)),)}) == []


@pytest.mark.parametrize("bare", [False, True])
def test_bare_names_are_not_looked_up_remotely_with_the_cluster_off(bare: bool) -> None:
    p = plan_of(web("db"), [], [remote("b", "db", "192.0.2.7")], node=None, bare=bare)
    assert p.links[0].problem is Problem.MISSING


@pytest.mark.parametrize("bare", [False, True])
def test_a_bare_name_nobody_has_is_missing(bare: bool) -> None:
    p = plan_of(web("db"), [], [remote("b", "cache", "192.0.2.7")], bare=bare)
    assert p.links[0].problem is Problem.MISSING


def test_own_nodes_records_in_remote_are_ignored() -> None:
    # Our own records come back from etcd: they must neither resolve nor make ambiguity.
    mine = remote(ME, "db", "192.0.2.99")
    assert plan_of(web("db"), [], [mine], bare=True).links[0].problem is Problem.MISSING
    p = plan_of(web("db"), [], [mine, remote("b", "db", "192.0.2.7")], bare=True)
    assert p.links[0].targets == ("b/db",)
    assert rendered(p) == ["192.0.2.7\tdb"]
    snap = Snapshot([], [mine, remote("b", "db", "192.0.2.7")], ME)
    assert (ME, "db") not in snap.remote
    assert [c.node for c in snap.remote_by_name["db"]] == ["b"]


# --- pinned networks --------------------------------------------------------------------


def test_pinned_network_matching_the_published_one_resolves() -> None:
    p = plan_of(web("b/db@macvlan0"), [], [remote("b", "db", "192.0.2.7")])
    assert p.links[0].resolved
    assert rendered(p) == ["192.0.2.7\tdb"]
    p = plan_of(web("db@macvlan0"), [], [remote("b", "db", "192.0.2.7")], bare=True)
    assert rendered(p) == ["192.0.2.7\tdb"]


@pytest.mark.parametrize("spec", ["b/db@bridge", "db@bridge", "b/db:x@other"])
def test_pinned_network_other_than_the_published_one_is_not_on_network(spec: str) -> None:
    p = plan_of(web(spec), [], [remote("b", "db", "192.0.2.7")], bare=True)
    assert p.links[0].problem is Problem.NOT_ON_NETWORK
    assert rendered(p) == []


# --- compose ----------------------------------------------------------------------------


def test_same_project_compose_service_wins_over_remote() -> None:
    replica = ctr("proj-db-1", net("proj_default", "10.0.1.2"), project="proj", service="db")
    p = plan_of(web("db", project="proj"), [replica], [remote("b", "db", "192.0.2.7")])
    assert p.links[0].targets == ("proj-db-1",)
    assert rendered(p) == ["10.0.1.2\tdb proj-db-1"]


@pytest.mark.parametrize("state", ["running", "exited"])
def test_another_projects_service_name_never_falls_through(state: str) -> None:
    """Even with the option on: a service name here is a local name."""
    replica = ctr("other-db-1", net("other_default", "10.0.1.2"), project="other",
                  service="db", state=state)
    recs = [remote("b", "db", "192.0.2.7")]
    p = plan_of(web("db"), [replica], recs, bare=True)
    assert p.links[0].problem is Problem.BARE_REMOTE
    assert rendered(p) == []
    # The replica's own container name is unaffected, and node/target still works.
    p = plan_of(web("b/db"), [replica], recs, bare=True)
    assert rendered(p) == ["192.0.2.7\tdb"]


def test_a_compose_dependents_bare_names_never_fall_through() -> None:
    """Even with the option on: its project's service may be scaled to 0, and then the
    engine shows no trace of the name."""
    recs = [remote("b", "db", "192.0.2.7")]
    p = plan_of(web("db", project="proj"), [], recs, bare=True)
    assert p.links[0].problem is Problem.BARE_REMOTE
    assert rendered(plan_of(web("b/db", project="proj"), [], recs, bare=True)) == [
        "192.0.2.7\tdb"]


def test_a_compose_service_scaled_to_zero_is_not_taken_over() -> None:
    replica = ctr("proj-db-1", net("proj_default", "10.0.1.2"), project="proj", service="db")
    recs = [remote("b", "db", "192.0.2.7")]
    dep = web("db", project="proj")
    assert rendered(plan_of(dep, [replica], recs, bare=True)) == ["10.0.1.2\tdb proj-db-1"]
    scaled_to_zero = plan_of(dep, [], recs, bare=True)
    assert rendered(scaled_to_zero) == []


def test_node_spec_skips_the_compose_service() -> None:
    replica = ctr("proj-db-1", net("proj_default", "10.0.1.2"), project="proj", service="db")
    p = plan_of(web("b/db", project="proj"), [replica], [remote("b", "db", "192.0.2.7")])
    assert rendered(p) == ["192.0.2.7\tdb"]


# --- keep mode --------------------------------------------------------------------------


def test_gone_problems_are_what_keep_mode_papers_over() -> None:
    assert Problem.NOT_PUBLISHED in GONE
    assert Problem.AMBIGUOUS not in GONE
    assert Problem.NO_CLUSTER not in GONE
    assert Problem.NOT_ON_NETWORK not in GONE


def test_keep_mode_keeps_previous_lines_when_the_record_goes() -> None:
    previous = {"db": (HostLine("192.0.2.7", ("db",)), HostLine("2001:db8::7", ("db",))),
                "other": (HostLine("10.0.0.9", ("other",)),)}
    p = plan_of(web("b/db, cache"), [ctr("cache", net("bridge", "10.0.0.5"))], [])
    assert p.links[0].problem is Problem.NOT_PUBLISHED
    assert rendered(p) == ["10.0.0.5\tcache"]
    assert rendered(p, keep_stopped=True, kept=previous) == [
        "192.0.2.7\tdb", "2001:db8::7\tdb", "10.0.0.5\tcache"]


def test_keep_mode_does_not_keep_lines_without_a_cluster() -> None:
    p = plan_of(web("b/db"), [], [], node=None)
    assert rendered(p, keep_stopped=True, kept={"db": (HostLine("192.0.2.7", ("db",)),)}) == []


def test_keep_mode_keeps_a_remote_bare_name_that_went_away() -> None:
    p = plan_of(web("db"), [], [], bare=True)
    assert p.links[0].problem is Problem.MISSING
    kept = {"db": (HostLine("192.0.2.7", ("db",)),)}
    assert rendered(p, keep_stopped=True, kept=kept) == ["192.0.2.7\tdb"]


def test_keep_mode_keeps_a_removed_local_target_that_another_node_publishes() -> None:
    # As if no node published it: the kept line is this host's last one.
    p = plan_of(web("db"), [], [remote("b", "db", "192.0.2.7")])
    kept = {"db": (HostLine("10.0.0.2", ("db",)),)}
    assert rendered(p, keep_stopped=True, kept=kept) == ["10.0.0.2\tdb"]


# --- the rest of the graph with remote records ------------------------------------------


def test_plan_all_makes_no_plans_for_remote_records() -> None:
    recs = [remote("b", "db", "192.0.2.7")]
    plans = plan_all(Snapshot([web("b/db")], recs, ME), LABEL)
    assert list(plans) == [cid("web")]
    snap = Snapshot([web("b/db")], recs, ME)
    assert len(snap) == 1
    assert [c.name for c in snap] == ["web"]


def test_stopped_targets_ignores_remote_problems() -> None:
    snap = Snapshot([web("b/db, c/x, db")], [remote("b", "db", "192.0.2.7")], ME)
    plans = plan_all(snap, LABEL).values()
    assert waiting_dependents(snap, plans) == {}


# --- ObservedState feeds the snapshot -----------------------------------------------------


def test_observed_state_cluster_feeds_the_snapshot() -> None:
    observed = ObservedState()
    observed.listed([web("b/db")], now=0.0)
    before = observed.snapshot()
    assert web_plan(before).links[0].problem is Problem.NO_CLUSTER

    recs = (remote("b", "db", "192.0.2.7"),)
    observed.cluster(ME, recs)
    after = observed.snapshot()
    assert after is not before
    assert after.node == ME
    assert rendered(web_plan(after)) == ["192.0.2.7\tdb"]


def test_observed_state_snapshot_is_cached_until_the_cluster_changes() -> None:
    observed = ObservedState()
    observed.listed([web("b/db")], now=0.0)
    recs = (remote("b", "db", "192.0.2.7"),)
    observed.cluster(ME, recs)
    first = observed.snapshot()
    assert observed.snapshot() is first
    observed.cluster(ME, (remote("b", "db", "192.0.2.7"),))  # equal: nothing to redo
    assert observed.snapshot() is first

    observed.cluster(ME, (remote("b", "db", "192.0.2.8"),))  # moved
    moved = observed.snapshot()
    assert moved is not first
    assert rendered(web_plan(moved)) == ["192.0.2.8\tdb"]

    observed.cluster(ME, ())  # record gone
    gone = observed.snapshot()
    assert gone is not moved
    assert web_plan(gone).links[0].problem is Problem.NOT_PUBLISHED

    observed.cluster(None, ())  # cluster off
    off = observed.snapshot()
    assert off is not gone
    assert off.node is None
    assert web_plan(off).links[0].problem is Problem.NO_CLUSTER


def test_observed_state_keeps_the_cluster_across_lists_and_events() -> None:
    observed = ObservedState()
    observed.cluster(ME, (remote("b", "db", "192.0.2.7"),))
    observed.listed([web("b/db")], now=0.0)
    observed.stopped(cid("other"), now=1.0)
    observed.forget_events()
    snap = observed.snapshot()
    assert snap.node == ME
    assert ("b", "db") in snap.remote


def test_observed_state_passes_the_bare_names_option_on() -> None:
    observed = ObservedState()
    observed.listed([web("db")], now=0.0)
    recs = (remote("b", "db", "192.0.2.7"),)
    observed.cluster(ME, recs)
    off = observed.snapshot()
    assert web_plan(off, "db").links[0].problem is Problem.BARE_REMOTE
    assert observed.cluster(ME, recs, bare_names=True) is True
    on = observed.snapshot()
    assert on is not off and on.bare_names
    assert rendered(web_plan(on, "db")) == ["192.0.2.7\tdb"]
    assert on.replaced(web("db")).bare_names


def test_a_snapshot_with_new_remote_records_keeps_its_node_its_bare_names_and_its_locals() -> None:
    """`Snapshot.with_remote` (the observed state's cheap path when only other nodes'
    records changed) must be the snapshot a full build gives."""
    web = ctr("web", net("n1", "10.0.0.2"), links="db")
    twins = [ctr("db", net("n1", "10.0.0.3")),
             Container(cid("db-old"), "db", "exited", endpoints=(net("n1", ""),))]
    before = Snapshot([web, *twins], (), "a", True)
    records = [Container("a-db", "db", "running", node="a", endpoints=(net("n1", "10.9.0.1"),)),
               Container("b-db", "db", "running", node="b", endpoints=(net("n1", "10.9.0.2"),))]
    after = before.with_remote(records)
    built = Snapshot([web, *twins], records, "a", True)
    assert (after.node, after.bare_names) == ("a", True)
    assert after.shared_names == built.shared_names == {"db"}
    assert dict(after.remote) == dict(built.remote)  # our own node's record left out
    assert list(after.remote) == [("b", "db")]
    assert after.by_id == built.by_id and after.by_name == built.by_name
