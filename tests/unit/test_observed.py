"""The last list, corrected by newer events until a list agrees (or the override ages out)."""

from __future__ import annotations

import hashlib

from hostsyncd.core.model import Container, Endpoint
from hostsyncd.core.observed import OVERRIDE_TTL, ObservedState


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


NET_A = Endpoint("a", cid("net:a"), "10.1.0.2")
NET_A_NEW = Endpoint("a", cid("net:a"), "10.1.0.9")
NET_B = Endpoint("b", cid("net:b"), "10.2.0.2", "fd00::2")
DB = cid("db")


def db(state: str = "running", *endpoints: Endpoint) -> Container:
    return Container(id=DB, name="db", state=state, endpoints=endpoints)


def seen(state: ObservedState, container_id: str = DB) -> Container | None:
    return state.snapshot().by_id.get(container_id)


def test_list_alone_is_the_snapshot() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A), Container(cid("x"), "x", "exited")], now=0)
    snap = state.snapshot()
    assert len(snap) == 2
    assert snap.by_name["db"].endpoints == (NET_A,)
    assert snap.by_name["x"].state == "exited"


def test_connect_overrides_a_stale_list() -> None:
    state = ObservedState()
    state.listed([db("created")], now=0)
    state.connected(DB, "db", NET_A, now=1)
    got = seen(state)
    assert got is not None
    assert got.state == "running"
    assert got.has_address
    assert got.endpoints == (NET_A,)


def test_connect_replaces_a_stale_address_on_the_same_network() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A, NET_B)], now=0)
    state.connected(DB, "db", NET_A_NEW, now=1)
    got = seen(state)
    assert got is not None
    assert got.endpoint("a") == NET_A_NEW
    assert got.endpoint("b") == NET_B
    assert len(got.endpoints) == 2


def test_connect_keeps_paused_state() -> None:
    state = ObservedState()
    state.listed([db("paused", NET_A)], now=0)
    state.connected(DB, "db", NET_B, now=1)
    got = seen(state)
    assert got is not None
    assert got.state == "paused"


def test_stopped_hides_addresses_at_once_even_if_the_list_says_running() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A, NET_B)], now=0)
    assert seen(state).has_address  # type: ignore[union-attr]
    state.stopped(DB, now=1)
    got = seen(state)
    assert got is not None
    assert not got.has_address
    assert not got.is_live
    # no address on any network; the networks themselves stay known (the start fast path
    # asks them when the container starts again)
    assert [(ep.network_id, ep.ipv4, ep.ipv6) for ep in got.endpoints] == [
        (NET_A.network_id, "", ""), (NET_B.network_id, "", "")]
    # a list taken before the container died (still running) does not bring them back
    state.listed([db("running", NET_A, NET_B)], now=2)
    got = seen(state)
    assert got is not None
    assert not got.has_address
    assert not any(ep.ipv4 or ep.ipv6 for ep in got.endpoints)


def test_a_list_that_agrees_drops_the_override() -> None:
    state = ObservedState()
    state.listed([db("created")], now=0)
    state.connected(DB, "db", NET_A, now=1)
    state.listed([db("running", NET_A)], now=2)
    # The override is gone: a later list is believed as is, even a surprising one.
    state.listed([db("created")], now=3)
    got = seen(state)
    assert got is not None
    assert got.state == "created"
    assert got.endpoints == ()


def test_a_list_that_disagrees_keeps_the_override() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.connected(DB, "db", NET_A_NEW, now=1)
    state.listed([db("running", NET_A)], now=2)  # still the old address: stale
    assert seen(state).endpoint("a") == NET_A_NEW  # type: ignore[union-attr]


def test_stopped_override_dropped_once_the_list_agrees() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.stopped(DB, now=1)
    state.listed([db("exited")], now=2)
    # the override is gone: a restart seen by the next list shows again
    state.listed([db("running", NET_A_NEW)], now=3)
    got = seen(state)
    assert got is not None
    assert got.state == "running"
    assert got.endpoints == (NET_A_NEW,)


def test_stopped_override_dropped_when_the_container_is_gone_from_the_list() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.stopped(DB, now=1)
    state.listed([], now=2)
    assert seen(state) is None


def test_overrides_expire_after_the_ttl() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.connected(DB, "db", NET_A_NEW, now=10)
    stale = [db("running", NET_A)]
    state.listed(stale, now=10 + OVERRIDE_TTL - 1)
    assert seen(state).endpoint("a") == NET_A_NEW  # type: ignore[union-attr]
    state.listed(stale, now=10 + OVERRIDE_TTL + 1)
    assert seen(state).endpoint("a") == NET_A  # type: ignore[union-attr]


def test_stopped_override_expires_after_the_ttl() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.stopped(DB, now=5)
    state.listed([db("running", NET_A)], now=5 + OVERRIDE_TTL - 1)
    assert not seen(state).has_address  # type: ignore[union-attr]
    state.listed([db("running", NET_A)], now=5 + OVERRIDE_TTL + 1)
    assert seen(state).has_address  # type: ignore[union-attr]


def test_a_newer_event_restarts_the_ttl() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.connected(DB, "db", NET_A_NEW, now=0)
    state.connected(DB, "db", NET_A_NEW, now=OVERRIDE_TTL)
    state.listed([db("running", NET_A)], now=OVERRIDE_TTL + 5)
    assert seen(state).endpoint("a") == NET_A_NEW  # type: ignore[union-attr]


def test_container_only_known_from_a_connect_appears_by_name() -> None:
    state = ObservedState()
    state.listed([], now=0)
    new = cid("fresh")
    state.connected(new, "fresh", NET_A, now=1)
    snap = state.snapshot()
    got = snap.by_name.get("fresh")
    assert got is not None
    assert got.id == new
    assert got.has_address
    assert got.endpoints == (NET_A,)


def test_container_known_from_a_connect_without_name_gets_a_short_id() -> None:
    state = ObservedState()
    new = cid("fresh")
    state.connected(new, "", NET_A, now=1)
    got = state.snapshot().by_id[new]
    assert got.name == new[:12]


def test_disconnect_removes_that_network_only() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A, NET_B)], now=0)
    state.disconnected(DB, NET_A.network_id, now=1)
    got = seen(state)
    assert got is not None
    assert got.endpoints == (NET_B,)
    assert got.state == "running"


def test_disconnect_does_not_make_a_stopped_container_running() -> None:
    """`docker network disconnect` works on a stopped container too, and Docker emits a
    disconnect right after a container dies. Neither says the container runs."""
    state = ObservedState()
    state.listed([db("exited", Endpoint("a", cid("net:a")), Endpoint("b", cid("net:b")))], 0)
    state.disconnected(DB, NET_A.network_id, now=1)
    got = seen(state)
    assert got is not None
    assert got.state == "exited"
    assert not got.has_address


def test_connect_after_stop_shows_running_again() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.stopped(DB, now=1)
    state.connected(DB, "db", NET_A_NEW, now=2)
    got = seen(state)
    assert got is not None
    assert got.has_address
    assert got.endpoint("a") == NET_A_NEW


def test_snapshot_is_rebuilt_after_each_change() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    first = state.snapshot()
    assert state.snapshot() is first
    state.stopped(DB, now=1)
    second = state.snapshot()
    assert second is not first
    assert not second.by_id[DB].has_address
    state.listed([db("exited")], now=2)
    assert state.snapshot() is not second


# -- renames: the engine lists both names mid-rename, even right after the event ----------


def both_names(first: str, other: str, *endpoints: Endpoint) -> Container:
    """A list entry taken mid-rename, as the engine edge builds it: both names, the first
    one as `name` (the engine gives them in no telling order)."""
    return Container(id=DB, name=first, state="running", endpoints=endpoints,
                     other_names=(other,))


def test_a_rename_beats_a_list_that_still_shows_both_names() -> None:
    state = ObservedState()
    state.listed([both_names("db", "db-away", NET_A)], now=0)  # taken before the event
    state.renamed(DB, "db-away", "db", now=1)
    state.listed([both_names("db", "db-away", NET_A)], now=2)  # and one taken after it
    snap = state.snapshot()
    got = snap.by_id[DB]
    assert got.name == "db-away"
    assert got.other_names == ()
    assert "db" not in snap.by_name
    assert snap.by_name["db-away"] is got
    # The rename leaves the rest alone.
    assert got.state == "running"
    assert got.endpoints == (NET_A,)


def test_a_rename_back_beats_a_list_that_shows_both_names() -> None:
    state = ObservedState()
    state.renamed(DB, "db-away", "db", now=1)
    state.renamed(DB, "db", "db-away", now=2)
    state.listed([both_names("db-away", "db", NET_A)], now=3)
    assert seen(state).name == "db"  # type: ignore[union-attr]


def test_a_rename_corrects_a_list_taken_before_it() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.renamed(DB, "db-away", "db", now=1)
    assert seen(state).name == "db-away"  # type: ignore[union-attr]
    assert "db" not in state.snapshot().by_name


def test_a_list_with_the_new_name_alone_drops_the_rename() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.renamed(DB, "db-away", "db", now=1)
    state.listed([Container(DB, "db-away", "running", endpoints=(NET_A,))], now=2)
    assert seen(state).name == "db-away"  # type: ignore[union-attr]
    # The override is gone: a later list with both names is believed as it is.
    state.listed([both_names("db", "db-away", NET_A)], now=3)
    assert seen(state).name == "db"  # type: ignore[union-attr]


def test_a_list_showing_a_later_rename_wins() -> None:
    """A list may already show a rename whose event is still on its way: its name stands."""
    state = ObservedState()
    state.renamed(DB, "db-away", "db", now=1)
    state.listed([Container(DB, "db-later", "running", endpoints=(NET_A,))], now=2)
    assert seen(state).name == "db-later"  # type: ignore[union-attr]


def test_a_rename_without_the_old_name_still_settles_a_list_with_both() -> None:
    state = ObservedState()
    state.renamed(DB, "db-away", "", now=1)
    state.listed([both_names("db", "db-away", NET_A)], now=2)
    assert seen(state).name == "db-away"  # type: ignore[union-attr]
    state.listed([Container(DB, "db-away", "running", endpoints=(NET_A,))], now=3)
    state.listed([both_names("db", "db-away", NET_A)], now=4)
    assert seen(state).name == "db"  # type: ignore[union-attr]


def test_a_rename_keeps_a_stop_and_a_stop_keeps_the_rename() -> None:
    state = ObservedState()
    state.listed([both_names("db", "db-away", NET_A)], now=0)
    state.renamed(DB, "db-away", "db", now=1)
    state.stopped(DB, now=2)
    state.listed([both_names("db", "db-away", NET_A)], now=3)
    got = seen(state)
    assert got is not None
    assert got.name == "db-away"
    assert not got.has_address


def test_a_rename_override_expires_after_the_ttl() -> None:
    state = ObservedState()
    state.renamed(DB, "db-away", "db", now=1)
    stuck = [both_names("db", "db-away", NET_A)]
    state.listed(stuck, now=1 + OVERRIDE_TTL - 1)
    assert seen(state).name == "db-away"  # type: ignore[union-attr]
    state.listed(stuck, now=1 + OVERRIDE_TTL + 1)
    assert seen(state).name == "db"  # type: ignore[union-attr]


def test_a_rename_of_a_container_gone_from_the_list_is_dropped() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.renamed(DB, "db-away", "db", now=1)
    state.listed([], now=2)
    assert seen(state) is None


def test_a_remote_change_with_its_names_updates_the_snapshot_and_says_them() -> None:
    from builders import ctr, net

    from hostsyncd.core.graph import Snapshot

    def record(name: str, ip: str) -> Container:
        return Container(f"b-{name}", name, "running", node="b", endpoints=(net("n1", ip),))

    state = ObservedState()
    state.listed([ctr("web", net("n1", "10.0.0.2"), links="b/db")], 0.0)
    assert state.cluster("a", (record("db", "10.9.0.1"),))  # no names: everything
    first = state.snapshot()
    assert state.take_changes() is None and state.take_remote_changes() is None
    assert state.cluster("a", (record("db", "10.9.0.2"),), changed={"db"})
    assert state.cluster("a", (record("db", "10.9.0.2"), record("x", "10.9.0.3")),
                         changed={"x"})
    after = state.snapshot()
    assert after.by_id is first.by_id  # the local indexes are shared, not rebuilt
    assert after.remote == Snapshot([], (record("db", "10.9.0.2"), record("x", "10.9.0.3")),
                                    "a").remote
    assert state.take_remote_changes() == {"db", "x"}
    assert state.take_changes() == frozenset()
    assert state.take_remote_changes() == frozenset()
    # Another node name (or bare-name policy) is a new world: everything again.
    assert state.cluster("z", (record("db", "10.9.0.2"),), changed={"db"})
    assert state.take_remote_changes() is None


def test_a_list_asked_by_id_skips_what_the_filter_also_matched_and_takes_the_rest() -> None:
    """The engine's id filter matches by prefix: other containers may come back too."""
    state = ObservedState()
    other = Container(cid("other"), "other", "running", endpoints=(NET_B,))
    state.listed([other, db("running", NET_A)], now=0, only={DB})
    assert seen(state).endpoints == (NET_A,)  # type: ignore[union-attr]
    assert seen(state, other.id) is None


def test_a_list_asked_about_a_container_never_seen_and_gone_says_nothing_of_it() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.snapshot()
    state.listed([], now=1, only={cid("created-and-removed")})
    assert len(state.snapshot()) == 1


def test_a_container_the_engine_said_has_a_healthcheck_is_starting_after_each_stop() -> None:
    state = ObservedState()
    state.listed([db("exited")], now=0)  # a stopped container's list shows no health
    state.healthchecked(DB)
    state.connected(DB, "db", NET_A, now=1)
    state.health(DB, "healthy", now=2)
    state.stopped(DB, now=3)
    assert seen(state).health == "starting"  # type: ignore[union-attr]


def test_a_connect_keeps_the_other_names_a_list_shows() -> None:
    state = ObservedState()
    state.listed([both_names("db", "web/db", NET_A)], now=0)
    state.connected(DB, "db", NET_A_NEW, now=1)
    assert seen(state).other_names == ("web/db",)  # type: ignore[union-attr]


def test_a_list_showing_a_later_rename_wins_while_an_address_is_still_overridden() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.renamed(DB, "db-away", "db", now=1)
    state.connected(DB, "db-away", NET_A_NEW, now=2)
    # Neither name, and the old address: the connect is kept, the later name stands.
    state.listed([Container(DB, "db-later", "running", endpoints=(NET_A,))], now=3)
    got = seen(state)
    assert got is not None and got.name == "db-later" and got.endpoints == (NET_A_NEW,)
