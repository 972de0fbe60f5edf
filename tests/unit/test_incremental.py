"""An incremental reconcile decides exactly what a full one decides, whatever happened in
between: it plans only the dependents a change touches (core.reconcile.touched), so a
dependent it missed would keep a stale block. Hypothesis drives random histories of starts,
stops, address changes, renames, recreations, removals, sidecars, compose replicas and label
changes, and after every step the two must agree."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from builders import LINKS, cid, ctr, examples, net
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsyncd.core.graph import Snapshot
from hostsyncd.core.model import Container
from hostsyncd.core.reconcile import Result, changed_ids, reconcile, touched

NAMES = ["a", "b", "c", "d", "e", "f"]
SERVICES = ["web", "db"]


def _link_label(targets: list[str]) -> str:
    return ",".join(targets)


@st.composite
def _container(draw: st.DrawFn, name: str, generation: int) -> Container:
    running = draw(st.booleans())
    networks = draw(st.lists(st.sampled_from(["n1", "n2"]), max_size=2, unique=True))
    host = draw(st.integers(2, 5))
    endpoints = [net(n, f"10.0.{i}.{host}" if running else "") for i, n in enumerate(networks)]
    links = draw(st.one_of(st.none(), st.lists(
        st.sampled_from([*NAMES, *SERVICES, "x:alias", "a@n2", "zz"]), max_size=3)
        .map(_link_label)))
    mode = draw(st.sampled_from(["", "", "", "container:a", "container:b",
                                 f"container:{cid('c:0')}"]))
    compose = draw(st.sampled_from([None, None, "web", "db"]))
    own_health = draw(st.sampled_from([None, None, "wait", "ignore", "bogus"]))
    found = ctr(name, *([] if mode else endpoints),
                state="running" if running else "exited", links=links,
                project="p" if compose else None, service=compose,
                network_mode=mode if mode != f"container:{name}" else "",
                labels={"hostsyncd.health": own_health} if own_health else None)
    # A recreated container keeps its name but gets a new id.
    return Container(id=cid(f"{name}:{generation}"), name=found.name, state=found.state,
                     labels=found.labels, network_mode=found.network_mode,
                     endpoints=found.endpoints,
                     hosts_mounted=draw(st.sampled_from([False, False, False, True])),
                     health=draw(st.sampled_from(["", "", "healthy", "starting", "unhealthy"])))


@st.composite
def _histories(draw: st.DrawFn) -> list[list[Container]]:
    generations = dict.fromkeys(NAMES, 0)
    world: dict[str, Container] = {n: draw(_container(n, 0)) for n in NAMES[:4]}
    steps = [list(world.values())]
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(NAMES))
        action = draw(st.sampled_from(["change", "change", "recreate", "remove", "rename"]))
        if action == "remove":
            world.pop(name, None)
        elif action == "rename" and name in world:
            new = draw(st.sampled_from(NAMES))
            if new not in world:
                old = world.pop(name)
                world[new] = Container(old.id, new, old.state, old.labels, old.network_mode,
                                       old.endpoints, hosts_mounted=old.hosts_mounted,
                                       health=old.health)
        else:
            if action == "recreate" or name not in world:
                generations[name] += 1
            world[name] = draw(_container(name, generations[name]))
        steps.append(list(world.values()))
    return steps


def _same(full: Result, inc: Result) -> None:
    assert dict(inc.plans) == dict(full.plans)
    assert dict(inc.files) == dict(full.files)
    assert dict(inc.blocks) == dict(full.blocks)
    assert dict(inc.skipped) == dict(full.skipped)
    assert dict(inc.unmanaged) == dict(full.unmanaged)
    assert set(inc.conflicts) == set(full.conflicts)
    assert _waiting(inc.waiting) == _waiting(full.waiting)
    assert dict(inc.kept) == dict(full.kept)
    assert set(inc.writes) <= set(full.writes)


def _waiting(waiting: Mapping[str, list]) -> dict[str, list[str]]:
    return {t: sorted(p.dependent.id for p in plans) for t, plans in waiting.items()}


@settings(max_examples=examples(300), deadline=None)
@given(_histories(), st.booleans(), st.sampled_from(["ignore", "wait"]),
       st.sampled_from(["", "corp.example"]))
def test_incremental_decides_what_a_full_pass_decides(history: list[list[Container]],
                                                      keep: bool, health: str,
                                                      domain: str) -> None:
    current: dict[str, bytes] = {}
    kept_full: Mapping = {}
    previous = None
    for containers in history:
        snapshot = Snapshot(containers)
        full = reconcile(snapshot, current, LINKS, keep, kept_full, health, domain=domain)
        inc = reconcile(snapshot, current, LINKS, keep,
                        previous.kept if previous is not None else {}, health,
                        previous=previous, domain=domain)
        _same(full, inc)
        # Every file the full pass would write that the incremental one did not must
        # already hold its block: nothing is left unwritten.
        for fid in set(full.writes) - set(inc.writes):
            assert current.get(fid) == full.blocks[fid] or fid not in current
        current = dict(full.blocks)
        kept_full, previous = full.kept, inc


def test_an_event_plans_only_the_dependents_it_touches() -> None:
    db = ctr("db", net("n1", "10.0.0.2"))
    deps = [ctr(f"web{i}", net("n1", f"10.0.1.{i}"), links="db") for i in range(5)]
    others = [ctr(f"app{i}", net("n1", f"10.0.2.{i}"), links="cache") for i in range(50)]
    first = reconcile(Snapshot([db, *deps, *others]), {}, LINKS)
    moved = ctr("db", net("n1", "10.0.0.9"))
    after = reconcile(Snapshot([moved, *deps, *others]), first.blocks, LINKS, previous=first)
    assert after.replanned == frozenset(d.id for d in deps)
    assert sorted(after.writes) == sorted(d.id for d in deps)
    assert b"10.0.0.9\tdb" in after.blocks[deps[0].id]


def test_a_sidecar_of_a_changed_owner_is_touched() -> None:
    app = ctr("app", net("n1", "10.0.0.2"))
    side = ctr("side", network_mode=f"container:{app.id}", links="db")
    db = ctr("db", net("n1", "10.0.0.3"))
    before = Snapshot([app, side, db])
    first = reconcile(before, {}, LINKS)
    after = Snapshot([ctr("app", net("n1", "10.0.0.4"), links=None), side, db])
    assert touched(first.index, before, after, changed_ids(before, after), LINKS) == {side.id}


@pytest.mark.parametrize("length", [12, 20])
def test_a_sidecar_joined_by_a_short_id_is_touched(length: int) -> None:
    """`--network container:<id prefix>`: Docker takes a prefix of 12 characters or more."""
    app = ctr("app", net("n1", "10.0.0.2"))
    side = ctr("side", network_mode=f"container:{app.id[:length]}", links="db")
    db = ctr("db", net("n1", "10.0.0.3"))
    before = Snapshot([app, side, db])
    first = reconcile(before, {}, LINKS)
    after = Snapshot([ctr("app", net("n1", "10.0.0.4")), side, db])
    assert touched(first.index, before, after, changed_ids(before, after), LINKS) == {side.id}


def test_a_sidecar_that_comes_later_is_indexed_among_other_changes() -> None:
    """A sidecar created after the first pass, in a batch with other changes: the next
    change of its owner still reaches it. (A batch is a set, in hash order: with 50 other
    changes, a decider that stopped at the first unchanged join would still pass 1 run in
    51, by meeting the sidecar first.)"""
    app, db = ctr("app", net("n1", "10.0.0.2")), ctr("db", net("n1", "10.0.0.3"))
    others = [ctr(f"o{i}", net("n1", f"10.0.1.{i}")) for i in range(50)]
    first = reconcile(Snapshot([app, db, *others]), {}, LINKS)
    side = ctr("side", network_mode=f"container:{app.id}", links="db")
    moved = [ctr(f"o{i}", net("n1", f"10.0.2.{i}")) for i in range(50)]
    second = reconcile(Snapshot([app, db, side, *moved]), first.blocks, LINKS,
                       previous=first)
    third = reconcile(Snapshot([ctr("app", net("n1", "10.0.0.9")), db, side, *moved]),
                      second.blocks, LINKS, previous=second)
    assert side.id in (third.replanned or ())


@pytest.mark.parametrize("remote_changed", [None, ()])
@pytest.mark.parametrize("keep", [False, True])
def test_other_nodes_records_changing_without_their_names_plans_everything(
        remote_changed: tuple[str, ...] | None, keep: bool) -> None:
    """Without the names that changed (None), or with none named although the records
    changed (the caller's log lost them), the incremental reconcile falls back to a full
    pass, with every setting it was given."""
    local = [ctr("web", net("n1", "10.0.0.2"), links="db", labels={
        "hostsyncd.health": "wait"}), ctr("app", net("n1", "10.0.0.5"), links="db:base")]
    snapshot = Snapshot(local, (), "a", bare_names=True)
    first = reconcile(snapshot, {}, LINKS, keep, {}, "wait", domain="corp.example")
    remote = (Container("r", "db", "running", node="b", endpoints=(net("n1", "10.9.0.1"),),
                        health="healthy"),)
    again = Snapshot(list(snapshot), remote, "a", bare_names=True)
    assert changed_ids(snapshot, again) is None
    result = reconcile(again, first.blocks, LINKS, keep, first.kept, "wait", previous=first,
                       domain="corp.example", remote_changed=remote_changed)
    assert result.replanned is None
    full = reconcile(again, first.blocks, LINKS, keep, first.kept, "wait",
                     domain="corp.example")
    _same(full, result)
    assert b"10.9.0.1\tdb db.corp.example" in result.blocks[local[0].id]


def test_nothing_changed_writes_nothing() -> None:
    snapshot = Snapshot([ctr("web", net("n1", "10.0.0.2"), links="db"),
                         ctr("db", net("n1", "10.0.0.3"))])
    first = reconcile(snapshot, {}, LINKS)
    again = reconcile(snapshot, {}, LINKS, previous=first)
    assert again.writes == () and again.replanned == frozenset()
    # It is a decision on the snapshot it was given: the next one compares against that.
    same = Snapshot(list(snapshot))
    assert reconcile(same, {}, LINKS, previous=first).snapshot is same


def test_a_dependent_that_stops_naming_a_target_is_not_planned_again_when_it_changes() -> None:
    a, b = ctr("a", net("n1", "10.0.0.2")), ctr("b", net("n1", "10.0.0.3"))
    web = ctr("web", net("n1", "10.0.0.4"), links="a")
    first = reconcile(Snapshot([a, b, web]), {}, LINKS)
    relabelled = ctr("web", net("n1", "10.0.0.4"), links="b")
    second = reconcile(Snapshot([a, b, relabelled]), first.blocks, LINKS, previous=first)
    assert second.replanned == {web.id}
    moved = ctr("a", net("n1", "10.0.0.9"))
    third = reconcile(Snapshot([moved, b, relabelled]), second.blocks, LINKS,
                      previous=second)
    assert third.replanned == frozenset()


@pytest.mark.parametrize("remote_changed", [None, ()])
def test_a_fallback_to_a_full_pass_keeps_keep_modes_lines(
        remote_changed: tuple[str, ...] | None) -> None:
    web = ctr("web", net("n1", "10.0.0.2"), links="db")
    running = Snapshot([web, ctr("db", net("n1", "10.0.0.3"))], (), "a")
    first = reconcile(running, {}, LINKS, keep=True)
    stopped = Snapshot([web, ctr("db", net("n1"), state="exited")], (), "a")
    second = reconcile(stopped, first.blocks, LINKS, True, first.kept, previous=first)
    assert b"10.0.0.3\tdb" in second.blocks[web.id]  # kept while db is stopped
    records = Snapshot(list(stopped), (_record("b", "other", 2),), "a")
    third = reconcile(records, second.blocks, LINKS, True, second.kept, previous=second,
                      remote_changed=remote_changed)
    assert third.replanned is None  # a full pass...
    assert b"10.0.0.3\tdb" in third.blocks[web.id]  # ...that still keeps the line


def test_a_new_node_name_plans_everything_even_with_the_changed_names_given() -> None:
    web = ctr("web", net("n1", "10.0.0.2"), links="b/db")
    record = _record("b", "db", 2)
    first = reconcile(Snapshot([web], (record,), "a"), {}, LINKS)
    assert b"10.9.8.2\tdb" in first.blocks[web.id]
    renamed = Snapshot([web], (record,), "b")  # this node is now "b": b/db is its own
    after = reconcile(renamed, first.blocks, LINKS, previous=first, changed=(),
                      remote_changed=())
    assert after.replanned is None
    _same(reconcile(renamed, first.blocks, LINKS), after)


# -- the observed state: the snapshot it updates is the one it would build ----------------

_events = st.lists(st.tuples(
    st.sampled_from(["list", "connect", "disconnect", "stop", "forget", "health",
                     "healthchecked", "rename"]),
    st.sampled_from(NAMES), st.integers(2, 9)), max_size=12)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(_histories(), min_size=1, max_size=1), _events)
def test_observed_updates_its_snapshot_as_it_would_build_it(
        lists: list[list[list[Container]]], events: list[tuple[str, str, int]]) -> None:
    from hostsyncd.core.observed import ObservedState

    history = iter(lists[0] * 3)
    # The twin gets every call too, but builds its snapshot from scratch each time.
    observed, twin = ObservedState(), ObservedState()
    first = next(history)
    for each in (observed, twin):
        each.listed(first, 0.0)
    before = observed.snapshot()
    observed.take_changes()
    for now, (kind, name, host) in enumerate(events, start=1):
        target = before.by_name.get(name)
        if kind == "list":
            listed = next(history, [])
            for each in (observed, twin):
                each.listed(listed, float(now))
        elif target is None:
            continue
        for each in (observed, twin):
            if kind == "connect":
                each.connected(target.id, name, net("n1", f"10.0.9.{host}"), float(now))
            elif kind == "disconnect":
                each.disconnected(target.id, cid("net:n1"), float(now))
            elif kind == "stop":
                each.stopped(target.id, float(now))
            elif kind == "forget":
                each.forget_events()
            elif kind == "health":
                each.health(target.id, "healthy" if host % 2 else "unhealthy", float(now))
            elif kind == "healthchecked":
                each.healthchecked(target.id)
            elif kind == "rename":
                each.renamed(target.id, NAMES[host % len(NAMES)], name, float(now))
        after = observed.snapshot()
        changes = observed.take_changes()
        twin._snapshot = None
        fresh = twin.snapshot()
        assert after.by_id == fresh.by_id
        assert after.by_name == fresh.by_name
        assert {k: v for k, v in after.by_service.items() if v} == \
            {k: v for k, v in fresh.by_service.items() if v}
        actual = changed_ids(before, after)
        assert changes is not None and actual is not None and actual <= changes
        before = after


@settings(max_examples=examples(200), deadline=None)
@given(_histories(), _events, st.data())
def test_a_list_of_the_changed_containers_alone_is_as_good_as_the_whole_list(
        history: list[list[Container]], events: list[tuple[str, str, int]],
        data: st.DataObject) -> None:
    """The daemon asks the engine for the containers an event names (an id filter) instead
    of the whole list: when only those changed, it must come to the same snapshot as a
    full list, and say the same containers changed."""
    from hostsyncd.core.observed import ObservedState

    whole, partial = ObservedState(), ObservedState()
    for each in (whole, partial):
        each.listed(history[0], 0.0)
        each.snapshot()
        each.take_changes()
    previous = {c.id: c for c in history[0]}
    for now, world in enumerate(history[1:], start=1):
        kind, name, host = data.draw(st.sampled_from(events)) if events else ("", "", 0)
        target = whole.snapshot().by_name.get(name)
        if target is not None and kind in ("connect", "stop"):  # an event between lists
            for each in (whole, partial):
                if kind == "connect":
                    each.connected(target.id, name, net("n1", f"10.0.9.{host}"), now - 0.5)
                else:
                    each.stopped(target.id, now - 0.5)
        current = {c.id: c for c in world}
        ids = {cid for cid in previous.keys() | current.keys()
               if previous.get(cid) != current.get(cid)}
        if target is not None:
            ids.add(target.id)  # the event's container is asked about too
        # The engine's id filter matches by pattern: it may answer with more than asked.
        extra = data.draw(st.sampled_from([[], world[:1]]))
        whole.listed(world, float(now))
        partial.listed([*(c for c in world if c.id in ids), *extra], float(now), only=ids)
        a, b = whole.snapshot(), partial.snapshot()
        assert a.by_id == b.by_id
        assert a.by_name == b.by_name
        assert whole.take_changes() == partial.take_changes()
        previous = current


# -- other nodes' records: a change plans only the dependents linking to its name ----------

_REMOTE_NAMES = ["a", "b", "zz", "yy"]


def _record(node: str, name: str, host: int) -> Container:
    return Container(f"{node}-{name}", name, "running", node=node,
                     endpoints=(net("n1", f"10.9.{ord(node[0]) % 10}.{host}"),))


@st.composite
def _remote_histories(draw: st.DrawFn) -> list[dict[tuple[str, str], Container]]:
    records: dict[tuple[str, str], Container] = {}
    steps = [dict(records)]
    for _ in range(draw(st.integers(1, 8))):
        key = (draw(st.sampled_from(["b", "c"])), draw(st.sampled_from(_REMOTE_NAMES)))
        if draw(st.booleans()) or key not in records:
            records[key] = _record(*key, draw(st.integers(2, 4)))
        else:
            del records[key]
        steps.append(dict(records))
    return steps


@settings(max_examples=examples(300), deadline=None)
@given(_histories(), _remote_histories(), st.booleans(), st.booleans(),
       st.lists(st.sampled_from(["zz", "b/zz", "c/a", "yy:alias", "c/yy", "a"]), min_size=1,
                max_size=3), st.booleans())
def test_a_remote_change_plans_what_a_full_pass_plans(
        history: list[list[Container]], remote: list[dict[tuple[str, str], Container]],
        bare: bool, keep: bool, links: list[str], compare: bool) -> None:
    """`compare`: the local changes are found by comparing the snapshots (changed=None)
    rather than given by the observed state."""
    local = [*history[0], ctr("remotedep", net("n1", "10.0.7.7"), links=",".join(links))]
    current: dict[str, bytes] = {}
    previous = None
    before: dict[tuple[str, str], Container] = {}
    for records in remote:
        snapshot = Snapshot(local, records.values(), "a", bare)
        names = {name for key in before.keys() | records.keys()
                 if before.get(key) != records.get(key) for name in (key[1],)}
        full = reconcile(snapshot, current, LINKS, keep, previous.kept if previous else {})
        inc = reconcile(snapshot, current, LINKS, keep, previous.kept if previous else {},
                        previous=previous, changed=None if compare else (),
                        remote_changed=names)
        _same(full, inc)
        if previous is not None and (names or not compare):
            # Incremental, not a full pass. (Records rebuilt with no name changed, and
            # nothing said about the local side: compared, that is a change of unknown
            # reach, so a full pass.)
            assert inc.replanned is not None
        current, previous, before = dict(full.blocks), inc, records


def test_a_remote_change_replans_only_the_dependents_naming_it() -> None:
    web = ctr("web", net("n1", "10.0.0.2"), links="b/db")
    others = [ctr(f"app{i}", net("n1", f"10.0.1.{i}"), links="b/cache") for i in range(20)]
    first = reconcile(Snapshot([web, *others], [_record("b", "db", 2)], "a"), {}, LINKS)
    moved = Snapshot([web, *others], [_record("b", "db", 3)], "a")
    after = reconcile(moved, first.blocks, LINKS, previous=first, changed=(),
                      remote_changed={"db"})
    assert after.replanned == {web.id}
    assert after.writes == (web.id,)
    assert b"10.9.8.3\tdb" in after.blocks[web.id]
    # Not told which names changed: everything is planned again.
    assert reconcile(moved, first.blocks, LINKS, previous=first, changed=()).replanned is None
