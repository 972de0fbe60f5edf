"""Published cluster records: what this node publishes, and which remote records are usable."""

from __future__ import annotations

import ipaddress
import json
from types import MappingProxyType

import builders
import pytest
from builders import cid, examples, net
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hostsyncd._etcd import prefix_end
from hostsyncd.core.graph import Snapshot
from hostsyncd.core.links import is_docker_name
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.core.records import (
    MAX_RECORD_BYTES,
    RecordError,
    nodes_prefix,
    parse_record,
    published,
    record_key,
)

PREFIX = "/hostsyncd"
LABEL = "hostsyncd.publish"
NODE = "a"

RECORD_KEYS = {"id", "name", "node", "network", "ipv4", "ipv6", "networks"}


def ctr(name: str, *endpoints: Endpoint, publish: str | None = "true", state: str = "running",
        network_mode: str = "") -> Container:
    return builders.ctr(name, *endpoints, state=state, network_mode=network_mode,
                        labels={} if publish is None else {LABEL: publish})


def publish(*containers: Container, advertise: str = "") -> tuple[dict, dict]:
    return published(Snapshot(containers), LABEL, NODE, advertise)


def decoded(records: dict[str, bytes], name: str) -> dict:
    return json.loads(records[name])


def record(**fields: object) -> dict:
    data: dict[str, object] = {
        "id": cid("db"), "name": "db", "node": "b", "network": "macvlan0",
        "ipv4": "192.0.2.7", "ipv6": "", "networks": ["macvlan0"],
    }
    data.update(fields)
    return data


def parse(data: object, key: str | None = None) -> Container | RecordError:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return parse_record(PREFIX, record_key(PREFIX, "b", "db") if key is None else key, raw)


# --- published(): who is published ------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "yes", "YES", "on", "On", "1",
                                   " true ", "\ttrue\n", "  Yes"])
def test_true_values_publish(value: str) -> None:
    records, problems = publish(ctr("db", net("n", "10.0.0.2"), publish=value))
    assert list(records) == ["db"]
    assert problems == {}


@pytest.mark.parametrize("value", ["false", "FALSE", "no", "No", "off", "0", "", "  ", " false "])
def test_false_values_quietly_do_not_publish(value: str) -> None:
    assert publish(ctr("db", net("n", "10.0.0.2"), publish=value)) == ({}, {})


@pytest.mark.parametrize("value", ["maybe", "2", "y", "t", "enabled", "true!", "tr ue"])
def test_other_values_are_a_problem_naming_the_label(value: str) -> None:
    db = ctr("db", net("n", "10.0.0.2"), publish=value)
    records, problems = publish(db)
    assert records == {}
    assert list(problems) == [db.id]
    assert LABEL in problems[db.id]


def test_containers_without_the_label_are_not_published() -> None:
    assert publish(ctr("db", net("n", "10.0.0.2"), publish=None)) == ({}, {})


def test_a_different_label_is_not_the_publish_label() -> None:
    db = Container(cid("db"), "db", "running", MappingProxyType({"other.publish": "true"}),
                   endpoints=(net("n", "10.0.0.2"),))
    assert publish(db) == ({}, {})


@pytest.mark.parametrize("state", ["exited", "created", "dead", "restarting", "removing"])
def test_stopped_containers_are_not_published(state: str) -> None:
    assert publish(ctr("db", net("n", "10.0.0.2"), state=state)) == ({}, {})


def test_paused_containers_keep_their_address_and_are_published() -> None:
    records, _ = publish(ctr("db", net("n", "10.0.0.2"), state="paused"))
    assert decoded(records, "db")["ipv4"] == "10.0.0.2"


def test_only_labelled_containers_among_many() -> None:
    records, problems = publish(
        ctr("db", net("n", "10.0.0.2")),
        ctr("cache", net("n", "10.0.0.3"), publish="no"),
        ctr("web", net("n", "10.0.0.4"), publish=None),
        ctr("old", net("n", "10.0.0.5"), state="exited"),
    )
    assert sorted(records) == ["db"]
    assert problems == {}


def test_no_usable_network_is_a_problem() -> None:
    db = ctr("db", net("n"))
    records, problems = publish(db)
    assert records == {}
    assert "no address" in problems[db.id]


# --- published(): which address ---------------------------------------------------------


def test_advertise_network_picks_that_endpoint_by_name() -> None:
    db = ctr("db", net("alpha", "10.0.0.2"), net("macvlan0", "192.0.2.7", "2001:db8::7"))
    records, problems = publish(db, advertise="macvlan0")
    data = decoded(records, "db")
    assert (data["network"], data["ipv4"], data["ipv6"]) == ("macvlan0", "192.0.2.7",
                                                             "2001:db8::7")
    assert problems == {}


def test_advertise_network_picks_that_endpoint_by_id() -> None:
    db = ctr("db", net("alpha", "10.0.0.2"), net("macvlan0", "192.0.2.7"))
    records, _ = publish(db, advertise=cid("net:macvlan0"))
    assert decoded(records, "db")["ipv4"] == "192.0.2.7"
    assert decoded(records, "db")["network"] == "macvlan0"


def test_advertise_network_missing_is_a_problem_naming_it() -> None:
    db = ctr("db", net("alpha", "10.0.0.2"))
    records, problems = publish(db, advertise="macvlan0")
    assert records == {}
    assert "macvlan0" in problems[db.id]


def test_advertise_network_without_an_address_there_is_a_problem() -> None:
    db = ctr("db", net("alpha", "10.0.0.2"), net("macvlan0"))
    records, problems = publish(db, advertise="macvlan0")
    assert records == {}
    assert db.id in problems


def test_default_is_the_first_network_by_name() -> None:
    # Endpoints as the engine edge gives them: sorted by network name.
    db = ctr("db", net("alpha", "10.0.1.2"), net("beta", "10.0.2.2"))
    records, _ = publish(db)
    assert decoded(records, "db")["network"] == "alpha"
    assert decoded(records, "db")["ipv4"] == "10.0.1.2"


def test_default_is_the_first_network_by_name_whatever_the_endpoint_order() -> None:
    db = ctr("db", net("zeta", "10.0.2.2"), net("alpha", "10.0.1.2"))
    records, _ = publish(db)
    assert decoded(records, "db")["network"] == "alpha"


def test_default_skips_networks_without_an_address() -> None:
    db = ctr("db", net("alpha"), net("beta", "10.0.2.2"))
    records, _ = publish(db)
    assert decoded(records, "db")["network"] == "beta"


def test_shared_network_namespace_publishes_the_owners_address() -> None:
    owner = ctr("vpn", net("macvlan0", "192.0.2.9"), publish=None)
    app = ctr("app", network_mode=f"container:{owner.id}")
    records, problems = publish(owner, app)
    assert list(records) == ["app"]
    data = decoded(records, "app")
    assert (data["name"], data["id"], data["network"], data["ipv4"]) == (
        "app", app.id, "macvlan0", "192.0.2.9")
    assert problems == {}


def test_shared_network_namespace_by_name_publishes_the_owners_address() -> None:
    owner = ctr("vpn", net("macvlan0", "192.0.2.9"), publish=None)
    app = ctr("app", network_mode="container:vpn")
    records, _ = publish(owner, app)
    assert decoded(records, "app")["ipv4"] == "192.0.2.9"


def test_shared_network_namespace_with_the_owner_gone_is_a_problem() -> None:
    app = ctr("app", network_mode="container:" + cid("gone"))
    records, problems = publish(app)
    assert records == {}
    assert app.id in problems


def test_host_network_mode_is_a_problem() -> None:
    db = ctr("db", Endpoint("host", cid("net:host")), network_mode="host")
    records, problems = publish(db)
    assert records == {}
    assert "host" in problems[db.id]


def test_sharing_a_host_mode_namespace_is_a_problem() -> None:
    owner = ctr("hostly", network_mode="host", publish=None)
    app = ctr("app", network_mode="container:hostly")
    records, problems = publish(owner, app)
    assert records == {}
    assert app.id in problems


def test_record_json_has_exactly_the_documented_fields() -> None:
    db = ctr("db", net("backend", "10.0.0.2"), net("macvlan0", "192.0.2.7", "2001:db8::7"))
    records, _ = publish(db, advertise="macvlan0")
    data = decoded(records, "db")
    assert set(data) == RECORD_KEYS
    assert data == {
        "id": db.id, "name": "db", "node": NODE, "network": "macvlan0",
        "ipv4": "192.0.2.7", "ipv6": "2001:db8::7", "networks": ["backend", "macvlan0"],
    }
    # Compact and stable: the same container gives the same bytes (no needless puts).
    assert records == publish(db, advertise="macvlan0")[0]
    assert b" " not in records["db"]


def test_record_json_ipv6_only() -> None:
    records, _ = publish(ctr("db", net("v6", ipv6="2001:db8::5")))
    data = decoded(records, "db")
    assert (data["ipv4"], data["ipv6"]) == ("", "2001:db8::5")


# --- parse_record(): round trip ---------------------------------------------------------


@pytest.mark.parametrize(("ipv4", "ipv6"), [("192.0.2.7", ""), ("", "2001:db8::7"),
                                            ("192.0.2.7", "2001:db8::7")])
def test_what_is_published_parses_back(ipv4: str, ipv6: str) -> None:
    db = ctr("db", net("backend", "10.0.0.2"), net("macvlan0", ipv4, ipv6))
    records, _ = published(Snapshot([db]), LABEL, "b", "macvlan0")
    found = parse_record(PREFIX, record_key(PREFIX, "b", "db"), records["db"])
    assert isinstance(found, Container)
    assert (found.node, found.name, found.id) == ("b", "db", db.id)
    assert found.state == "running"
    assert found.has_address
    assert found.endpoints == (Endpoint("macvlan0", "", ipv4, ipv6),)
    assert dict(found.labels) == {}


def test_record_key_and_nodes_prefix() -> None:
    assert nodes_prefix("/x/y") == "/x/y/nodes/"
    assert record_key("/x/y", "b", "db") == "/x/y/nodes/b/containers/db"
    assert record_key(PREFIX, "b", "db").startswith(nodes_prefix(PREFIX))


def test_empty_id_is_allowed_and_gets_a_stand_in() -> None:
    found = parse(record(id=""))
    assert isinstance(found, Container)
    assert found.id  # something unique per record, not ""
    other = parse(record(id="", node="c"), record_key(PREFIX, "c", "db"))
    assert isinstance(other, Container)
    assert found.id != other.id


def test_missing_optional_fields_default_to_empty() -> None:
    found = parse({"node": "b", "name": "db", "ipv6": "2001:db8::1"})
    assert isinstance(found, Container)
    assert found.endpoints == (Endpoint("", "", "", "2001:db8::1"),)


# --- parse_record(): rejects ------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "/hostsyncd/nodes/b/db",  # no /containers/
    "/hostsyncd/nodes/b/things/db",
    "/hostsyncd/nodes/b/containers/db/extra",
    "/hostsyncd/nodes/b/containers/",
    "/hostsyncd/nodes/b/containers",
    "/hostsyncd/nodes//containers/db",
    "/hostsyncd/nodes/b/c/containers/db",
    "/other/nodes/b/containers/db",
    "/hostsyncdX/nodes/b/containers/db",
    "hostsyncd/nodes/b/containers/db",
    "x/hostsyncd/nodes/b/containers/db",
    "/hostsyncd/b/containers/db",
    "",
])
def test_wrong_key_shapes_are_rejected(key: str) -> None:
    found = parse(record(), key)
    assert isinstance(found, RecordError)
    assert found.key == key
    assert "ignored cluster record" in str(found)


@pytest.mark.parametrize(("node", "name"), [
    ("b", ".."), ("..", "db"), ("b", "d..b"), ("b", "dé"), ("bé", "db"), ("b", "d\nb"),
    ("b", "d\x00b"), ("b", "d\tb"), ("b", "d b"), ("b", "-db"), ("b", ".db"), ("b", "d#b"),
    ("b\x7f", "db"), ("b", "d:b"), ("b", "x" * 254),
])
def test_names_that_are_not_plain_are_rejected(node: str, name: str) -> None:
    key = f"{PREFIX}/nodes/{node}/containers/{name}"
    found = parse(record(node=node, name=name), key)
    assert isinstance(found, RecordError)
    assert "plain name" in found.reason


def test_name_with_a_slash_is_rejected() -> None:
    key = f"{PREFIX}/nodes/b/containers/d/b"
    assert isinstance(parse(record(name="d/b"), key), RecordError)
    key = f"{PREFIX}/nodes/b/x/containers/db"
    assert isinstance(parse(record(node="b/x"), key), RecordError)


@pytest.mark.parametrize("value", [b"", b"not json", b"{", b"\xff\xfe", b"{'a': 1}",
                                   b"[" * 3000 + b"]" * 3000])
def test_value_not_json_is_rejected(value: bytes) -> None:
    found = parse(value[:MAX_RECORD_BYTES])
    assert isinstance(found, RecordError)


@pytest.mark.parametrize("value", [b"[]", b'"db"', b"1", b"null", b"true", b'["b", "db"]'])
def test_value_not_an_object_is_rejected(value: bytes) -> None:
    found = parse(value)
    assert isinstance(found, RecordError)
    assert "object" in found.reason


def test_value_too_big_is_rejected_even_when_valid_json() -> None:
    padded = record(networks=["n" * 100] * 50)
    raw = json.dumps(padded).encode()
    assert len(raw) > MAX_RECORD_BYTES
    found = parse(raw)
    assert isinstance(found, RecordError)
    assert str(MAX_RECORD_BYTES) in found.reason


def test_value_just_under_the_limit_is_accepted() -> None:
    base = json.dumps(record(networks=[])).encode()
    pad = MAX_RECORD_BYTES - len(base) - len(b', "pad": ""')
    raw = json.dumps({**record(networks=[]), "pad": "p" * pad}).encode()
    assert len(raw) == MAX_RECORD_BYTES
    assert isinstance(parse(raw), Container)


@pytest.mark.parametrize("fields", [{"node": "c"}, {"name": "cache"}, {"node": None},
                                    {"name": None}, {"node": "B"}, {"name": "DB"}])
def test_node_or_name_not_matching_the_key_is_rejected(fields: dict) -> None:
    found = parse(record(**fields))
    assert isinstance(found, RecordError)
    assert "match" in found.reason


def test_node_and_name_missing_from_the_value_are_rejected() -> None:
    data = record()
    del data["node"], data["name"]
    assert isinstance(parse(data), RecordError)


@pytest.mark.parametrize("fields", [{"id": 5}, {"id": None}, {"network": ["x"]},
                                    {"ipv4": 3232235777}, {"ipv6": {"a": 1}}, {"ipv4": None},
                                    {"network": True}])
def test_non_string_fields_are_rejected(fields: dict) -> None:
    found = parse(record(**fields))
    assert isinstance(found, RecordError)
    assert "strings" in found.reason


@pytest.mark.parametrize("bad_id", ["abc", "A" * 64, "g" * 64, "a" * 63, "a" * 65,
                                    "a" * 63 + "\n", " " + "a" * 64, "b/" + "a" * 62])
def test_bad_ids_are_rejected(bad_id: str) -> None:
    found = parse(record(id=bad_id))
    assert isinstance(found, RecordError)
    assert "id" in found.reason


@pytest.mark.parametrize("network", ["mac vlan", "a\nb", "..", "-n", "n#1", "né", "a/b",
                                     "n\t", "x" * 254])
def test_bad_network_names_are_rejected(network: str) -> None:
    found = parse(record(network=network))
    assert isinstance(found, RecordError)
    assert "network" in found.reason


def test_no_address_is_rejected() -> None:
    found = parse(record(ipv4="", ipv6=""))
    assert isinstance(found, RecordError)
    assert "no address" in found.reason


@pytest.mark.parametrize("ipv4", ["192.0.2", "192.0.2.256", "192.0.2.7 ", " 192.0.2.7",
                                  "192.0.2.7\n", "192.0.2.7\tevil", "192.0.2.7 evil",
                                  "192.0.2.7#", "01.2.3.4", "localhost", "\u0663.2.3.4",
                                  "192.0.2.7/24", "2001:db8::1", "::ffff:192.0.2.7"])
def test_invalid_ipv4_is_rejected(ipv4: str) -> None:
    found = parse(record(ipv4=ipv4))
    assert isinstance(found, RecordError)
    assert "ipv4" in found.reason


@pytest.mark.parametrize("ipv6", ["fe80::1%eth0", "fe80::1%1", "fe80::1%eth0 evil",
                                  "fe80::1%\nx", "2001:db8::1 ", "2001:db8::1\n",
                                  "2001:db8:::1", "2001:db8::g", "192.0.2.7", "::1/128",
                                  "2001:db8::1#x", "\uff12\uff10\uff10\uff11:db8::1"])
def test_invalid_ipv6_is_rejected(ipv6: str) -> None:
    found = parse(record(ipv4="", ipv6=ipv6))
    assert isinstance(found, RecordError)
    assert "ipv6" in found.reason


def test_a_bad_ipv6_spoils_a_good_ipv4() -> None:
    assert isinstance(parse(record(ipv4="192.0.2.7", ipv6="fe80::1%eth0")), RecordError)


def test_record_error_text_is_bounded() -> None:
    key = PREFIX + "/nodes/" + "x" * 500
    text = str(parse(record(), key))
    assert len(text) < 300
    assert "..." in text


# --- parse_record(): hostile input --------------------------------------------------------

_NAME_CHARS = "abz09._-"
_SAFE_NAMES = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("aZ7"), st.text(alphabet=_NAME_CHARS, max_size=12),
)
_HOSTILE_TEXT = st.one_of(
    _SAFE_NAMES,
    st.sampled_from(["..", ".", "", "b", "db", "-x", "a..b", "a.", "x" * 254, "x" * 253,
                     "d b", "d\nb", "d#b", "dé", "d\x00b", "d\u2028b", "d/b", "d:b", "D"]),
    st.text(alphabet="ab0./-_:%# \t\n\r\x00\x7fé\u2028", max_size=12),
    st.text(max_size=12),
)
_ADDRESSES = st.one_of(
    st.sampled_from(["", "192.0.2.7", "2001:db8::7", "fe80::1%eth0", "fe80::1%1",
                     "192.0.2.7\n", "192.0.2.7 evil", "::ffff:192.0.2.7", "192.0.2.7#",
                     "1.2.3.4%x", "::1", "0.0.0.0", "255.255.255.255", "\u0661.2.3.4",
                     "fe80::1%eth0\n1.2.3.4 evil"]),
    st.ip_addresses().map(str),
    st.builds(lambda ip, junk, front: (junk + str(ip)) if front else (str(ip) + junk),
              st.ip_addresses(), st.text(alphabet=" \t\n#%\x00é/", min_size=1, max_size=3),
              st.booleans()),
    st.text(alphabet="0123456789abcdef:.%", max_size=30),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
_JSONISH = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=6), st.just([]), st.just({}), st.just(["db"]), st.just({"a": "b"}),
)


# Built once: a strategy built inside the composite is validated again on every draw.
_PARTS = st.sets(st.sampled_from(
    ["key", "node", "name", "id", "network", "ipv4", "ipv6", "drop", "value"]), max_size=3)
_ANY_FIELD = st.one_of(_HOSTILE_TEXT, _JSONISH)
_KEY_SHAPES = st.sampled_from([
    "{p}/nodes/{node}/{name}",
    "{p}/nodes/{node}/containers/{name}/x",
    "/other/nodes/{node}/containers/{name}",
    "{p}nodes/{node}/containers/{name}",
    "{p}/nodes/{node}/containers/{name}\n",
    "{p}/nodes/{node}/containers/../{name}",
])
_MOSTLY = st.sampled_from((True,) * 7 + (False,))
_IPV4 = st.one_of(st.just(""), st.ip_addresses(v=4).map(str))
_IPV6 = st.one_of(st.just(""), st.ip_addresses(v=6).map(str))
_ID = st.sampled_from(["", cid("x")])
_FIELDS = st.sets(st.sampled_from(sorted(RECORD_KEYS)), min_size=1, max_size=2)
_HOW = st.integers(0, 3)
_BYTES = st.binary(max_size=40)


@st.composite
def _hostile(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid record with a few of its parts (key, fields, encoding) made hostile."""
    hostile = draw(_PARTS)
    node = draw(_HOSTILE_TEXT if "node" in hostile else _SAFE_NAMES)
    name = draw(_HOSTILE_TEXT if "name" in hostile else _SAFE_NAMES)
    key = f"{PREFIX}/nodes/{node}/containers/{name}"
    if "key" in hostile:
        key = draw(_KEY_SHAPES).format(p=PREFIX, node=node, name=name)
    data: dict[str, object] = {
        "node": node if draw(_MOSTLY) else draw(_ANY_FIELD),
        "name": name if draw(_MOSTLY) else draw(_ANY_FIELD),
        "id": draw(_ANY_FIELD if "id" in hostile else _ID),
        "network": draw(_ANY_FIELD if "network" in hostile else _SAFE_NAMES),
        "ipv4": draw(_ADDRESSES if "ipv4" in hostile else _IPV4),
        "ipv6": draw(_ADDRESSES if "ipv6" in hostile else _IPV6),
        "networks": draw(_JSONISH),
    }
    if "drop" in hostile:
        for field in draw(_FIELDS):
            del data[field]
    value = json.dumps(data, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if "value" in hostile:
        how = draw(_HOW)
        if how == 0:
            value = draw(_BYTES)
        elif how == 1:
            value += b" " * MAX_RECORD_BYTES
        elif how == 2:
            value = json.dumps(list(data.values())).encode()
        else:
            value = value[: len(value) * 2 // 3]
    return key, value


def _hosts_safe(text: str) -> bool:
    return text.isascii() and text.isprintable() and not any(c in text for c in " \t\n\r#%")


@settings(max_examples=examples(2000), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_hostile())
def test_hostile_records_never_raise_and_accepted_ones_are_hosts_safe(
    case: tuple[str, bytes],
) -> None:
    key, value = case
    found = parse_record(PREFIX, key, value)
    if isinstance(found, RecordError):
        assert found.key == key
        str(found)
        event("rejected")
        return
    event("accepted")
    assert isinstance(found, Container)
    assert key == record_key(PREFIX, found.node, found.name)
    assert is_docker_name(found.node) and is_docker_name(found.name)
    assert _hosts_safe(found.node) and _hosts_safe(found.name)
    assert found.state == "running"
    assert len(found.endpoints) == 1
    ep = found.endpoints[0]
    assert ep.ipv4 or ep.ipv6
    assert ep.network == "" or (is_docker_name(ep.network) and _hosts_safe(ep.network))
    if ep.ipv4:
        assert _hosts_safe(ep.ipv4)
        assert ipaddress.ip_address(ep.ipv4).version == 4
    if ep.ipv6:
        assert _hosts_safe(ep.ipv6)
        assert ipaddress.ip_address(ep.ipv6).version == 6
    assert "/" not in found.id or found.id == f"{found.node}/{found.name}"
    assert _hosts_safe(found.id.replace("/", ""))


@settings(max_examples=examples(300), deadline=None, database=None)
@given(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), _SAFE_NAMES,
       _SAFE_NAMES)
def test_every_valid_record_round_trips(ipv4: str, ipv6: str, node: str, name: str) -> None:
    if ".." in node or ".." in name or _forbidden(ipv4) or _forbidden(ipv6):
        return
    container = Container(cid(name), name, "running", MappingProxyType({LABEL: "yes"}),
                          endpoints=(Endpoint("macvlan0", "x", ipv4, ipv6),))
    records, problems = published(Snapshot([container]), LABEL, node, "")
    assert problems == {}
    found = parse_record(PREFIX, record_key(PREFIX, node, name), records[name])
    assert isinstance(found, Container), found
    assert (found.node, found.name, found.id) == (node, name, container.id)
    assert found.endpoints == (Endpoint("macvlan0", "", ipv4, ipv6),)


def test_shared_network_namespace_publishes_the_owners_networks() -> None:
    owner = ctr("vpn", net("backend", "10.0.0.9"), net("macvlan0", "192.0.2.9"), publish=None)
    app = ctr("app", network_mode="container:vpn")
    records, _ = publish(owner, app, advertise="macvlan0")
    assert decoded(records, "app")["networks"] == ["backend", "macvlan0"]


@pytest.mark.parametrize(("name", "network"), [("db..1", "macvlan0"), ("db", "mac..vlan")])
def test_what_is_published_is_accepted_by_peers_or_reported(name: str, network: str) -> None:
    db = ctr(name, net(network, "192.0.2.7"))
    records, problems = published(Snapshot([db]), LABEL, "b", "")
    if name in records:
        found = parse_record(PREFIX, record_key(PREFIX, "b", name), records[name])
        assert isinstance(found, Container), found
    else:
        assert db.id in problems


# --- _etcd.prefix_end: the etcd range that covers a prefix ------------------------------


@pytest.mark.parametrize(("prefix", "end"), [
    (b"/a/", b"/a0"),
    (b"/hostsyncd/nodes/", b"/hostsyncd/nodes0"),
    (b"a", b"b"),
    (b"a\xff", b"b"),
    (b"a\xff\xff", b"b"),
    (b"\x00", b"\x01"),
    (b"a\xfe", b"a\xff"),
    (b"\xff", b"\0"),
    (b"\xff\xff", b"\0"),
    (b"", b"\0"),
])
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


@settings(max_examples=examples(500), deadline=None, database=None)
@given(st.binary(min_size=1, max_size=6), st.binary(max_size=8), st.data())
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(
    prefix: bytes, key: bytes, data: st.DataObject,
) -> None:
    if all(b == 0xFF for b in prefix):
        return
    # Half the time, a key near the prefix: the interesting side of the boundary.
    if data.draw(st.booleans()):
        key = prefix[: data.draw(st.integers(0, len(prefix)))] + key
    end = prefix_end(prefix)
    assert (prefix <= key < end) == key.startswith(prefix)


# --- addresses no other host's container can have -------------------------------------------

# The reference, written out independently of records.py: each network and why.
_FORBIDDEN_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16")]
_FORBIDDEN_V6 = [ipaddress.IPv6Network(n) for n in ("::/128", "::1/128", "ff00::/8",
                                                     "fe80::/10")]
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _forbidden(text: str) -> bool:
    if not text:
        return False
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return any(ip in n for n in _FORBIDDEN_V4)
    if any(ip in n for n in _FORBIDDEN_V6):
        return True
    if ip in _V4_MAPPED or ip in _V4_COMPATIBLE:
        return _forbidden(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return False


@pytest.mark.parametrize(("ipv4", "why"), [
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"),
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
])
def test_ipv4_that_no_other_host_can_hold_is_rejected(ipv4: str, why: str) -> None:
    found = parse(record(ipv4=ipv4))
    assert isinstance(found, RecordError)
    assert found.reason.startswith("ipv4 is ") and why in found.reason
    assert ipv4 not in found.reason  # one message per node and name, whatever the address


@pytest.mark.parametrize(("ipv6", "why"), [
    ("::", "unspecified"), ("::1", "loopback"), ("ff02::1", "multicast"),
    ("ff05::2", "multicast"), ("fe80::1", "link-local"), ("febf::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback address inside"),
    ("::ffff:0.0.0.0", "unspecified address inside"),
    ("::ffff:169.254.169.254", "link-local address inside"),
    ("::ffff:224.0.0.1", "multicast address inside"),
    ("::ffff:255.255.255.255", "broadcast address inside"),
    ("::127.0.0.1", "loopback address inside"),
    ("::ffff:7f00:1", "loopback address inside"),
])
def test_ipv6_that_no_other_host_can_hold_is_rejected(ipv6: str, why: str) -> None:
    found = parse(record(ipv4="", ipv6=ipv6))
    assert isinstance(found, RecordError)
    assert found.reason.startswith("ipv6 is ") and why in found.reason


def test_a_forbidden_ipv6_spoils_a_good_ipv4() -> None:
    found = parse(record(ipv4="192.0.2.7", ipv6="::1"))
    assert isinstance(found, RecordError) and "ipv6" in found.reason


@pytest.mark.parametrize("ip", ["10.0.0.7", "172.17.0.2", "192.168.1.1", "100.64.0.1",
                                "1.1.1.1", "223.255.255.255", "240.0.0.1", "169.253.0.1",
                                "126.255.255.255", "128.0.0.1", "1.0.0.0"])
def test_ordinary_ipv4_is_accepted(ip: str) -> None:
    assert isinstance(parse(record(ipv4=ip)), Container)


@pytest.mark.parametrize("ip", ["2001:db8::7", "fd00:231::7", "fec0::1", "fe00::1",
                                "::ffff:10.0.0.7", "::2:0:0:1", "64:ff9b::a00:7", "::1:0:0:0"])
def test_ordinary_ipv6_is_accepted(ip: str) -> None:
    assert isinstance(parse(record(ipv4="", ipv6=ip)), Container)


def test_the_same_node_and_name_is_reported_once_whatever_forbidden_address_it_cycles() -> None:
    reasons = {str(parse(record(ipv4=f"127.0.0.{i}"))) for i in range(1, 50)}
    assert len(reasons) == 1


def test_a_container_at_a_forbidden_address_is_not_published_and_says_why() -> None:
    db = ctr("db", net("lo0", "169.254.3.4"))
    records, problems = publish(db)
    assert records == {}
    assert "link-local" in problems[db.id] and "not published" in problems[db.id]


def _in(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> st.SearchStrategy[str]:
    first, size = int(network.network_address), network.num_addresses
    kind = type(network.network_address)
    return st.integers(0, size - 1).map(lambda n: str(kind(first + n)))


_CORNERS = st.sampled_from(["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255",
                            "169.254.169.254", "::", "::1", "ff02::1", "::ffff:127.0.0.1",
                            "fe80::1", "::ffff:0.0.0.1", "::0.0.0.2"])
_ANY_V4 = st.one_of(st.ip_addresses(v=4).map(str), *(_in(n) for n in _FORBIDDEN_V4),
                    _in(ipaddress.IPv4Network("168.0.0.0/6")),  # neighbours of 169.254/16
                    _in(ipaddress.IPv4Network("126.0.0.0/7")))
_ANY_V6 = st.one_of(
    st.ip_addresses(v=6).map(str), *(_in(n) for n in _FORBIDDEN_V6),
    _ANY_V4.map(lambda ip: f"::ffff:{ip}"), _ANY_V4.map(lambda ip: f"::{ip}"),
    _in(ipaddress.IPv6Network("fe00::/9")), _in(ipaddress.IPv6Network("fec0::/10")),
)


@settings(max_examples=examples(3000), deadline=None, database=None)
@given(st.one_of(_ANY_V4.map(lambda ip: (ip, "")), _ANY_V6.map(lambda ip: ("", ip)), _CORNERS
                 .map(lambda ip: (ip, "") if "." in ip and ":" not in ip else ("", ip))))
def test_an_address_is_accepted_exactly_when_another_host_can_hold_it(
    case: tuple[str, str],
) -> None:
    ipv4, ipv6 = case
    found = parse(record(ipv4=ipv4, ipv6=ipv6))
    forbidden = _forbidden(ipv4 or ipv6)
    event("forbidden" if forbidden else "usable")
    if forbidden:
        assert isinstance(found, RecordError), (ipv4, ipv6)
        assert found.reason.startswith("ipv4 is " if ipv4 else "ipv6 is ")
    else:
        assert isinstance(found, Container), (ipv4, ipv6, found)
        assert found.endpoints[0].ipv4 == ipv4 and found.endpoints[0].ipv6 == ipv6
