"""Behaviour of hostsyncd/core/ that mutation testing (`make mutation`) found untested: each
test pins a rule the other unit tests let change unnoticed."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from builders import LINKS as LABEL
from builders import cid, ctr, net

from hostsyncd.core.graph import (
    UNMANAGED_MOUNT,
    UNMANAGED_NO_OWNER,
    Problem,
    Snapshot,
    _LabelCache,
    files_of,
    plan,
    plan_all,
    resolve,
    waiting_dependents,
)
from hostsyncd.core.hostsblock import (
    BEGIN,
    END,
    MAX_FIELD_BYTES,
    changes,
    own_addresses,
    strip_block,
    untidy,
)
from hostsyncd.core.links import (
    MAX_LABEL_CHARS,
    SpecError,
    is_docker_name,
    parse_links,
    parse_spec,
)
from hostsyncd.core.model import Container, Endpoint, HostLine, LinkSpec
from hostsyncd.core.observed import OVERRIDE_TTL, ObservedState
from hostsyncd.core.records import (
    RecordError,
    parse_record,
    published,
    record_key,
    unusable_address,
)

DB_LINE = HostLine("10.0.0.2", ("db",))


# --- graph: plans -----------------------------------------------------------------------


def test_a_plans_lines_keep_nothing_unless_asked() -> None:
    stopped = ctr("db", net("n"), state="exited")
    found = plan(Snapshot([stopped]), ctr("web", net("n"), links="db"), LABEL)
    assert found is not None
    kept = {"db": (DB_LINE,)}
    assert found.lines(kept=kept) == []
    assert found.lines(True, kept) == [DB_LINE]
    # Memory of other aliases only: nothing to keep for this one.
    assert found.lines(True, {"cache": (DB_LINE,)}) == []


def test_a_files_lines_keep_each_dependents_own_memory_only_when_asked() -> None:
    stopped = ctr("db", net("n"), state="exited")
    web = ctr("web", net("n"), links="db")
    side = ctr("side", network_mode="container:web", links="db")
    snapshot = Snapshot([stopped, web, side])
    (found,) = files_of(snapshot, plan_all(snapshot, LABEL).values()).values()
    other = HostLine("10.0.0.3", ("db",))
    kept = {cid("web"): {"db": (DB_LINE,)}, cid("side"): {"db": (other,)}}
    assert found.lines(True, kept) == [DB_LINE, other]
    assert found.lines(kept=kept) == []
    assert found.lines(True) == []


def test_a_file_lists_its_owner_first_then_its_sidecars_by_name() -> None:
    # Listed in the opposite order, so only sorting puts them right.
    z_side = ctr("z-side", network_mode="container:web", links="db")
    a_side = ctr("a-side", network_mode="container:web", links="db")
    web = ctr("web", net("n"), links="db")
    for containers, names in (
        ([z_side, a_side, web], ("web", "a-side", "z-side")),
        ([a_side, web], ("web", "a-side")),
    ):
        snapshot = Snapshot([ctr("db", net("n", "10.0.0.2")), *containers])
        (found,) = files_of(snapshot, plan_all(snapshot, LABEL).values()).values()
        assert found.names == names
        assert (found.owner, found.owner_name) == (cid("web"), "web")


def test_a_running_replica_that_gives_no_address_does_not_hide_the_next_one() -> None:
    """Replicas are tried in name order; one that cannot answer is skipped, not the end."""
    stopped_ns = ctr("vpn", net("n", "10.0.0.8"), state="exited")
    broken_first = {
        "in a stopped namespace": ctr("p-db-1", network_mode="container:vpn",
                                      project="p", service="db"),
        "on the host network": ctr("p-db-1", net("host"), network_mode="host",
                                   project="p", service="db"),
        "detached": ctr("p-db-1", project="p", service="db"),
    }
    good = ctr("p-db-2", net("p_default", "10.0.1.3"), project="p", service="db")
    web = ctr("web", net("p_default"), links="db", project="p", service="web")
    for why, broken in broken_first.items():
        found = plan(Snapshot([stopped_ns, broken, good, web]), web, LABEL)
        assert found is not None
        assert [ln.render() for ln in found.lines()] == ["10.0.1.3\tdb p-db-2"], why


def test_resolve_alone_finds_a_sidecars_networks_through_its_namespace() -> None:
    """Without `mine`, a sidecar's networks are its namespace owner's: the target's address
    on the shared network wins over the first by name."""
    vpn = ctr("vpn", net("b"))
    side = ctr("side", network_mode="container:vpn", links="db")
    db = ctr("db", net("a", "10.0.0.2"), net("b", "10.0.9.2"))
    link = resolve(Snapshot([vpn, side, db]), side, LinkSpec("db", "db"))
    assert link.lines == (HostLine("10.0.9.2", ("db",)),)
    assert link.network == "b"


def test_a_stopped_compose_replica_is_waited_for_by_its_projects_dependents() -> None:
    replica = ctr("p-db-1", net("p_default"), state="exited", project="p", service="db")
    web = ctr("web", net("p_default"), links="db", project="p", service="web")
    snapshot = Snapshot([replica, web])
    plans = plan_all(snapshot, LABEL)
    assert waiting_dependents(snapshot, plans.values()) == {cid("p-db-1"): [plans[cid("web")]]}


# --- graph: the snapshot ----------------------------------------------------------------


def test_find_prefers_an_id_to_a_name() -> None:
    owner = ctr("owner")
    impostor = Container(id=cid("impostor"), name=owner.id, state="running")
    assert Snapshot([impostor, owner]).find(owner.id) is owner


def _remote(node: str, name: str, ipv4: str) -> Container:
    return Container(id=cid(f"{node}:{name}"), name=name, state="running",
                     endpoints=(Endpoint("macvlan0", "", ipv4),), node=node)


def test_a_replaced_snapshot_keeps_the_node_and_its_remote_records() -> None:
    web = ctr("web", net("n"), links="b/db")
    snapshot = Snapshot([web], [_remote("b", "db", "192.0.2.7")], node="a")
    new = snapshot.replaced(replace(web, state="paused"))
    assert resolve(new, web, LinkSpec("db", "db", node="b")).lines == (
        HostLine("192.0.2.7", ("db",)),)


def test_a_container_with_a_service_label_but_no_project_is_no_compose_service() -> None:
    """A bare name may leave this node unless a compose service here has it; a container
    labelled with a service but no project is not one, before or after a replace."""
    odd = ctr("odd", net("n"), service="db")
    web = ctr("web", net("n"), links="db")
    snapshot = Snapshot([odd, web], [_remote("b", "db", "192.0.2.7")], "a", bare_names=True)
    for each in (snapshot, snapshot.replaced(replace(odd, state="paused"))):
        (link,) = plan_all(each, LABEL)[cid("web")].links
        assert link.lines == (HostLine("192.0.2.7", ("db",)),)


# --- hostsblock -------------------------------------------------------------------------


def test_own_addresses_are_empty_strings_when_absent() -> None:
    assert own_addresses(b"", "web") == ("", "")
    assert own_addresses(b"10.0.0.5\tweb other\n", "web") == ("", "")


def test_own_addresses_skip_lines_that_are_no_address_and_go_on() -> None:
    content = b"not-an-ip\tweb\n\xff\tweb\n10.0.0.5\tweb\n"
    assert own_addresses(content, "web") == ("10.0.0.5", "")


def test_own_addresses_skip_link_local_and_loopback_ipv6() -> None:
    content = b"fd00::5\tweb\nfe80::1\tweb\n::1\tweb\n"
    assert own_addresses(content, "web") == ("", "fd00::5")
    assert own_addresses(b"fe80::1\tweb\n", "web") == ("", "")


def test_own_addresses_of_a_non_ascii_host_name_never_raise() -> None:
    # The name is the container's to choose; it can match no line Docker wrote.
    assert own_addresses(b"10.0.0.5\tweb\n", "w\u00e9b") == ("", "")


def test_untidy_is_nul_bytes_or_invalid_utf8() -> None:
    assert untidy(b"a\0b")
    assert untidy(b"10.0.0.2\t\xff\n")
    assert not untidy("10.0.0.2\tcaf\u00e9\n".encode())
    assert not untidy(b"127.0.0.1\tlocalhost\n")


def _block(*lines: bytes) -> bytes:
    return BEGIN + b"\n" + b"".join(ln + b"\n" for ln in lines) + END + b"\n"


def test_changes_count_ours_by_the_first_name_after_the_one_tab() -> None:
    before = _block(
        b"10.0.0.1\tdb",  # kept
        b"10.0.0.2\tdb a b",  # ours: the first name is an alias
        b"10.0.0.3\tjunk\tdb",  # two tabs: not a line we render
        b"10.0.0.4\tdb\tjunk",
        b"10.0.0.5\tother db",  # db only second: not ours
    )
    after = _block(b"10.0.0.1\tdb")
    assert changes(["db"], before, after) == ([], ["10.0.0.2\tdb a b"], 3)


def test_changes_cut_at_exactly_max_field_bytes() -> None:
    # Lines of 63 bytes plus their newline: 64 of them fill MAX_FIELD_BYTES to the byte.
    count = MAX_FIELD_BYTES // 64
    lines = [(b"10.0.%d.%d\t" % divmod(i, 256)).ljust(63, b"x") for i in range(count + 1)]
    added, removed, foreign = changes([], b"", _block(*lines))
    assert added == [ln.decode() for ln in lines[:count]] + ["... and 1 more"]
    assert (removed, foreign) == ([], 0)
    assert changes([], b"", _block(*lines[:count]))[0] == [ln.decode() for ln in lines[:count]]


def test_changes_show_non_ascii_bytes_replaced() -> None:
    assert changes([], b"", _block(b"10.0.0.1\tcaf\xc3\xa9"))[0] == ["10.0.0.1\tcaf\ufffd\ufffd"]


# --- observed ---------------------------------------------------------------------------

NET_A = Endpoint("a", cid("net:a"), "10.1.0.2")
NET_B = Endpoint("b", cid("net:b"), "10.2.0.2")
DB = cid("db")


def db(state: str = "running", *endpoints: Endpoint) -> Container:
    return Container(id=DB, name="db", state=state, endpoints=endpoints)


def seen(state: ObservedState) -> Container | None:
    return state.snapshot().by_id.get(DB)


def test_a_fresh_state_is_an_empty_snapshot_without_a_cluster() -> None:
    state = ObservedState()
    assert state.snapshot().find("db") is None
    assert state.cluster(None, ()) is False
    assert state.cluster("a", ()) is True


def test_an_override_lasts_until_exactly_the_ttl() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.stopped(DB, now=1.0)
    state.listed([db("running", NET_A)], now=1.0 + OVERRIDE_TTL)
    assert seen(state).state == "exited"
    state.listed([db("running", NET_A)], now=1.5 + OVERRIDE_TTL)
    assert seen(state).state == "running"


def test_a_stop_exits_what_ran_and_leaves_other_states_alone() -> None:
    for listed, after in (("running", "exited"), ("paused", "exited"),
                          ("restarting", "exited"), ("created", "created")):
        state = ObservedState()
        state.listed([db(listed, NET_A)], now=0)
        state.stopped(DB, now=1)
        found = seen(state)
        assert found is not None
        assert found.state == after, listed
        # Its networks stay, without addresses.
        assert found.endpoints == (replace(NET_A, ipv4=""),)


def test_events_for_an_unlisted_container_make_a_created_one() -> None:
    state = ObservedState()
    state.disconnected(DB, NET_A.network_id, now=1)
    found = seen(state)
    assert found is not None
    assert (found.name, found.state, found.endpoints) == (DB[:12], "created", ())
    state.stopped(DB, now=2)
    assert seen(state).state == "created"


def test_a_disconnect_from_a_network_the_list_never_showed_changes_nothing() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A)], now=0)
    state.disconnected(DB, NET_B.network_id, now=1)
    assert seen(state) == db("running", NET_A)
    # And the next list, agreeing, ends the override (its time is the event's).
    state.listed([db("running", NET_A)], now=2)
    assert seen(state) == db("running", NET_A)


def test_a_connect_outlives_a_list_that_lags_behind_it() -> None:
    state = ObservedState()
    state.connected(DB, "db", NET_A, now=1)
    state.listed([], now=2)  # not listed yet
    assert seen(state) == db("running", NET_A)
    state.listed([db("created")], now=3)  # listed, but not yet started
    assert seen(state) == db("running", NET_A)
    state.listed([db("running", NET_A)], now=4)
    state.listed([db("exited")], now=5)  # agreed at 4: the override is gone
    assert seen(state) == db("exited")


def test_a_disconnect_outlives_a_list_that_still_shows_the_network() -> None:
    state = ObservedState()
    state.listed([db("running", NET_A, NET_B)], now=0)
    state.disconnected(DB, NET_B.network_id, now=1)
    state.listed([db("running", NET_A, NET_B)], now=2)
    assert seen(state) == db("running", NET_A)
    state.listed([db("running", NET_A)], now=3)
    state.listed([db("running", NET_A, NET_B)], now=4)  # reconnected: agreed at 3
    assert seen(state) == db("running", NET_A, NET_B)


# --- records: what this node publishes, and why not -------------------------------------

PUBLISH = "hostsyncd.publish"


def _publishing(name: str, *endpoints: Endpoint, value: str = "true",
                network_mode: str = "") -> Container:
    return ctr(name, *endpoints, network_mode=network_mode, labels={PUBLISH: value})


def test_a_record_is_compact_json_with_sorted_keys() -> None:
    """Byte for byte: a peer compares values, and a record that moved its keys around would
    be a put (and a watch event on every node) for nothing."""
    db = _publishing("db", net("n", "10.0.0.2"))
    records, _ = published(Snapshot([db]), PUBLISH, "a")
    assert records == {"db": (
        f'{{"id":"{db.id}","ipv4":"10.0.0.2","ipv6":"","name":"db","network":"n",'
        '"networks":["n"],"node":"a"}').encode()}


def test_why_a_container_is_not_published_is_said_exactly() -> None:
    gone = _publishing("orphan", network_mode="container:" + cid("gone"))
    hostly = _publishing("hostly", net("host"), network_mode="host")
    bare = _publishing("bare", net("n"))
    odd = _publishing("odd..name", net("n", "10.0.0.5"))
    bogus = _publishing("bogus", net("n", "not-an-ip"))
    long_value = "x" * 50
    maybe = _publishing("maybe", net("n", "10.0.0.6"), value=long_value)
    records, problems = published(
        Snapshot([gone, hostly, bare, odd, bogus, maybe]), PUBLISH, "a")
    assert records == {}
    assert problems == {
        gone.id: "not published: the container whose network it shares is gone",
        hostly.id: "not published: it uses the host's network and has no address of its own",
        bare.id: "not published: no address on any network",
        odd.id: "not published: its name or network name is not plain (letters, digits, "
                "'_', '.', '-'; no '..')",
        bogus.id: "not published: peers refuse its address: not-an-ip is not an IP address",
        maybe.id: f"label {PUBLISH}={'x' * 40!r}: expected true or false",
    }


def test_a_container_that_is_not_published_does_not_stop_the_next_one() -> None:
    good = _publishing("good", net("n", "10.0.0.9"))
    before = {
        "unlabelled": ctr("quiet", net("n", "10.0.0.2")),
        "not true": _publishing("off", net("n", "10.0.0.3"), value="no"),
        "not false": _publishing("maybe", net("n", "10.0.0.4"), value="perhaps"),
        "stopped": replace(_publishing("stopped", net("n", "10.0.0.5")), state="exited"),
        "no address": _publishing("bare", net("n")),
        "not plain": _publishing("odd..name", net("n", "10.0.0.6")),
        "unusable": _publishing("lo", net("n", "127.0.0.2")),
    }
    for why, first in before.items():
        records, _ = published(Snapshot([first, good]), PUBLISH, "a")
        assert list(records) == ["good"], why


def test_without_an_advertise_network_the_first_by_name_is_published() -> None:
    db = _publishing("db", net("b", "10.0.0.3"), net("a", "10.0.0.2"))
    records, problems = published(Snapshot([db]), PUBLISH, "a")
    assert problems == {}
    assert b'"network":"a"' in records["db"]


def test_a_record_error_shows_a_key_of_up_to_120_characters_whole() -> None:
    whole, cut = "k" * 120, "k" * 121
    assert str(RecordError(whole, "why")) == f"ignored cluster record {whole!r}: why"
    assert str(RecordError(cut, "why")) == f"ignored cluster record {'k' * 117 + '...'!r}: why"


def _parse(**fields: object) -> Container | RecordError:
    data = {"node": "b", "name": "db", **fields}
    return parse_record("/h", record_key("/h", "b", "db"), json.dumps(data).encode())


def test_a_record_without_ipv6_has_none() -> None:
    found = _parse(ipv4="192.0.2.7")
    assert isinstance(found, Container)
    assert found.endpoints == (Endpoint("", "", "192.0.2.7", ""),)


def test_a_record_with_a_field_of_another_type_says_which_must_be_strings() -> None:
    found = _parse(ipv4="192.0.2.7", network=7)
    assert found == RecordError(record_key("/h", "b", "db"),
                                "id, network, ipv4 and ipv6 must be strings")


def test_an_ipv6_address_with_a_zone_is_refused() -> None:
    """`ipaddress` takes anything after a '%' as a zone; a hosts file line would carry it."""
    assert _parse(ipv6="2001:db8::1%eth0") == RecordError(
        record_key("/h", "b", "db"), "ipv6 is not an IPv6 address")
    assert _parse(ipv4="192.0.2.\u0667") == RecordError(
        record_key("/h", "b", "db"), "ipv4 is not an IPv4 address")


# --- links: each refusal says why -------------------------------------------------------

REASONS = {
    "db\u00e9": "non-ASCII character",
    "d\x00b": "control character",
    "db#x": "'#' is not allowed",
    "/db": "'/' must separate one node name from the target",
    "b/": "'/' must separate one node name from the target",
    "a/b/db": "'/' must separate one node name from the target",
    "-a/db": "node is not a valid node name",
    "db@": "'@' must be followed by one network name",
    "db@n@m": "'@' must be followed by one network name",
    "db@-n": "network is not a valid network name",
    ":db": "empty target",
    "db:": "':' must be followed by one alias",
    "db:a:b": "':' must be followed by one alias",
    "-db": "target is not a valid container name",
    "db:-a": "alias is not a valid host name",
    "c" * 64: "alias is not a valid host name",  # a Docker name, not a host name
    "a" * 254 + "/db": "node is not a valid node name",
}


def test_each_refused_spec_says_exactly_why() -> None:
    """The reason is what the log and `status` show the label's author."""
    for text, reason in REASONS.items():
        assert parse_spec(text) == SpecError(text, reason), text


def test_docker_names_are_up_to_253_characters() -> None:
    assert parse_spec("a" * 253 + "/db") == LinkSpec("db", "db", node="a" * 253)
    assert is_docker_name("a" * 253) and not is_docker_name("a" * 254)


def test_a_spec_error_shows_a_spec_of_up_to_80_characters_whole() -> None:
    whole, cut = "x" * 80, "x" * 81
    assert str(SpecError(whole, "why")) == f"invalid link spec {whole!r}: why"
    assert str(SpecError(cut, "why")) == f"invalid link spec {'x' * 77 + '...'!r}: why"


def test_a_label_cut_at_a_separator_keeps_its_last_spec() -> None:
    too_long = f"label longer than {MAX_LABEL_CHARS} chars"
    at_separator = " " * (MAX_LABEL_CHARS - 2) + "db cache"
    assert parse_links(at_separator) == (
        (LinkSpec("db", "db"),), (SpecError(" " * 40 + "...", too_long),))
    # Cut inside "cd": neither "c" nor anything after it, but every whole spec before.
    inside = " " * (MAX_LABEL_CHARS - 5) + "a b,cd"
    assert parse_links(inside)[0] == (LinkSpec("a", "a"), LinkSpec("b", "b"))


# --- records: each refused record says why ----------------------------------------------

_KEY = record_key("/h", "b", "db")
_REFUSED: list[tuple[str, bytes, str]] = [
    (_KEY, b'{"node":"b","name":"db","ipv4":"192.0.2.7","id":"xyz"}',
     "id is not 64 hex digits"),
    (_KEY, b'{"node":"b","name":"db","ipv4":"192.0.2.7","network":"a..b"}',
     "network is not a plain name"),
    (_KEY, b'{"node":"b","name":"db","ipv4":""}', "no address"),
    (_KEY, b'{"node":"b","name":"db","ipv4":"300.1.1.1"}', "ipv4 is not an IPv4 address"),
    (_KEY, b'{"node":"b","name":"db","ipv6":"zz::"}', "ipv6 is not an IPv6 address"),
    (_KEY, b'{"node":"b","name":"db","ipv6":"::"}', "ipv6 is an unspecified address"),
    (_KEY, b'{"node":"b","name":"db","ipv6":"::1"}', "ipv6 is a loopback address"),
    (_KEY, b'{"node":"c","name":"db","ipv4":"192.0.2.7"}',
     "node or name in the value does not match the key"),
    (_KEY, b"{", "value is not JSON"),
    (_KEY, b"[]", "value is not a JSON object"),
    ("/h/nodes/b/db", b"{}", "not a <prefix>/nodes/<node>/containers/<name> key"),
    ("/h/nodes/a..b/containers/db", b"{}", "node or container name is not a plain name"),
]


def test_each_refused_record_says_exactly_why() -> None:
    """The reason is logged once per node and name: it has to say what is wrong."""
    for key, value, reason in _REFUSED:
        assert parse_record("/h", key, value) == RecordError(key, reason), value


def test_an_ipv6_address_above_the_ipv4_compatible_range_is_no_embedded_ipv4() -> None:
    # ::1:7f00:1 has bit 32 set: not ::a.b.c.d, so not 127.0.0.1 in disguise.
    assert unusable_address(ipaddress.IPv6Address("::1:7f00:1")) == ""
    assert unusable_address(ipaddress.IPv6Address("::7f00:1")) == (
        "a loopback address inside an IPv6 address")


# --- graph: what the second run left ----------------------------------------------------


def test_a_label_cache_keeps_its_byte_count_through_evictions() -> None:
    cost = 2 * 3 + 256  # what one three-character label costs
    cache = _LabelCache(max_bytes=2 * cost)
    for value in ("aaa", "bbb", "ccc", "ddd"):
        cache(value)
        assert cache.size == cost * len(cache) <= 2 * cost
    assert set(cache._entries) == {"ccc", "ddd"}
    # A label costing exactly the whole budget is still cached.
    exact = _LabelCache(max_bytes=cost)
    exact("aaa")
    assert (len(exact), exact.size) == (1, cost)


def test_bare_names_stay_local_unless_asked() -> None:
    web = ctr("web", net("n"), links="db")
    (link,) = plan_all(Snapshot([web], [_remote("b", "db", "192.0.2.7")], "a"),
                       LABEL)[cid("web")].links
    assert link.problem is Problem.BARE_REMOTE


def test_a_replica_not_on_the_pinned_network_does_not_hide_the_next_one() -> None:
    first = ctr("p-db-1", net("other", "10.0.2.2"), project="p", service="db")
    second = ctr("p-db-2", net("pinned", "10.0.1.3"), project="p", service="db")
    web = ctr("web", net("pinned"), links="db@pinned", project="p", service="web")
    found = plan(Snapshot([first, second, web]), web, LABEL)
    assert found is not None
    assert [ln.render() for ln in found.lines()] == ["10.0.1.3\tdb p-db-2"]


def test_a_link_naming_this_node_skips_the_compose_service() -> None:
    """`node/target` names a container, never a service, even when the node is this one."""
    replica = ctr("p-db-1", net("n", "10.0.1.2"), project="p", service="db")
    named = ctr("db", net("n", "10.0.0.2"))
    web = ctr("web", net("n"), links="a/db", project="p", service="web")
    (link,) = plan_all(Snapshot([replica, named, web], (), "a"), LABEL)[cid("web")].links
    assert link.lines == (HostLine("10.0.0.2", ("db",)),)


def test_a_sidecar_whose_namespace_owner_is_gone_has_no_file_to_write() -> None:
    orphan = ctr("orphan", network_mode="container:" + cid("gone"), links="db")
    snapshot = Snapshot([ctr("db", net("n", "10.0.0.2")), orphan])
    found = plan(snapshot, orphan, LABEL)
    assert found is not None
    assert found.unmanaged == UNMANAGED_NO_OWNER
    assert (found.hosts_file, found.hosts_file_owner) == (orphan.id, "orphan")
    # Its links still resolve (for status and graph), on no network of its own.
    assert found.links[0].lines == (DB_LINE,)
    assert resolve(snapshot, orphan, LinkSpec("db", "db")).lines == (DB_LINE,)


def test_a_sidecar_reads_a_mounted_hosts_file_if_it_or_its_owner_mounts_one() -> None:
    owner = ctr("web", net("n"))
    db = ctr("db", net("n", "10.0.0.2"))
    for mounts, side_mounts in ((True, False), (False, True)):
        side = replace(ctr("side", network_mode="container:web", links="db"),
                       hosts_mounted=side_mounts)
        found = plan(Snapshot([db, replace(owner, hosts_mounted=mounts), side]), side, LABEL)
        assert found is not None
        assert found.unmanaged == UNMANAGED_MOUNT, (mounts, side_mounts)
        assert (found.hosts_file, found.hosts_file_owner) == (owner.id, "web")


def test_debris_after_an_empty_block_goes_with_it() -> None:
    assert strip_block(b"a\n" + BEGIN + b"\n" + END + b"\n\n\0\n") == b"a\n"
