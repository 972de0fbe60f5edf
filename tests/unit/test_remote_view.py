"""The cluster's view of other nodes' records is bounded: records per node, rejected keys
(kept as a digest and a short message, and beyond a count only counted), and each cap is
reported with one message that stays the same."""

from __future__ import annotations

import base64
import json
import sys

import pytest
from builders import cid, examples
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsyncd import cluster as cluster_module
from hostsyncd.cluster import MAX_REJECTED_KEPT, MAX_REJECTED_LISTED, RemoteView
from hostsyncd.core.graph import Snapshot
from hostsyncd.core.records import record_key

PREFIX = "/hostsyncd"
ME = "a"


def kv(key: str, value: bytes | str) -> dict[str, str]:
    raw = value.encode() if isinstance(value, str) else value
    return {"key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(raw).decode()}


def rec(node: str, name: str, ip: str = "192.0.2.7") -> dict[str, str]:
    value = json.dumps({"id": cid(name), "name": name, "node": node, "network": "lan",
                        "ipv4": ip, "ipv6": "", "networks": ["lan"]})
    return kv(record_key(PREFIX, node, name), value)


def view(cap: int = 10_000) -> RemoteView:
    return RemoteView(PREFIX, ME, cap)


def test_records_per_node_are_capped_and_the_cap_is_said_once() -> None:
    v = view(cap=3)
    for i in range(5):
        v.put(rec("b", f"db{i}"))
    for i in range(2):
        v.put(rec("c", f"x{i}"))
    assert sorted(c.name for c in v.records() if c.node == "b") == ["db0", "db1", "db2"]
    assert len([c for c in v.records() if c.node == "c"]) == 2
    problems = v.problems()
    assert list(problems) == ["cap:b"]
    assert "more than 3 records" in problems["cap:b"] and "max_records_per_node" in problems[
        "cap:b"]
    v.put(rec("b", "db9"))
    assert v.problems() == problems  # the same message: a ProblemLog says it once
    assert v.counts()["over_cap"] == {"b": 3}


def test_a_record_at_the_cap_may_change_and_a_delete_asks_for_a_read() -> None:
    v = view(cap=2)
    for name in ("db0", "db1", "db2"):
        v.put(rec("b", name))
    assert v.put(rec("b", "db1", "192.0.2.8")) is True  # known: updated in place
    assert {c.name: c.endpoints[0].ipv4 for c in v.records()} == {"db0": "192.0.2.7",
                                                                   "db1": "192.0.2.8"}
    changed, reread = v.delete(record_key(PREFIX, "b", "db0"))
    assert changed and reread  # db2 may take its place: only a read says
    other = view(cap=2)
    other.put(rec("b", "db0"))
    assert other.delete(record_key(PREFIX, "b", "db0")) == (True, False)


def test_own_records_and_name_claims_are_not_records_nor_problems() -> None:
    v = view()
    assert v.put(rec(ME, "db")) is False
    assert v.put(kv(f"{PREFIX}/nodes/b/owner", '{"node": "b"}')) is False
    assert v.put(kv(f"{PREFIX}/nodes/{ME}/owner", "x")) is False
    assert v.records() == () and v.problems() == {}


def test_rejected_keys_are_kept_short_whatever_their_size() -> None:
    v = view()
    big = "k" * 100_000
    for i in range(50):
        v.put(kv(f"{PREFIX}/nodes/b/containers/{big}{i}", b"v" * 100_000))
    kept = sum(sys.getsizeof(k) + sys.getsizeof(m) for k, m in v.rejected.items())
    assert kept < 50 * 600, kept
    assert all(len(m) < 300 for m in v.rejected.values())
    problems = v.problems()
    assert len(problems) == MAX_REJECTED_LISTED + 1
    assert "more than 20 cluster records are ignored" in problems["rejected:more"]
    assert v.counts()["rejected"] == 50


def test_beyond_the_kept_rejected_keys_they_are_only_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster_module, "MAX_REJECTED_KEPT", 5)
    v = view()
    for i in range(12):
        v.put(kv(f"{PREFIX}/nodes/b/containers/bad{i}", "not json"))
    assert len(v.rejected) == 5 and v.rejected_more == 7
    assert v.counts()["rejected"] == 12
    assert "rejected:more" in v.problems()


def test_a_rejected_key_that_becomes_valid_or_goes_is_forgotten() -> None:
    v = view()
    key = record_key(PREFIX, "b", "db")
    v.put(kv(key, "junk"))
    assert len(v.rejected) == 1
    v.put(rec("b", "db"))
    assert v.rejected == {} and [c.name for c in v.records()] == ["db"]
    v.put(kv(key, "junk"))
    assert v.records() == () and len(v.rejected) == 1
    assert v.delete(key) == (True, False)
    assert v.rejected == {} and v.problems() == {}


def test_the_constants_are_sane() -> None:
    assert MAX_REJECTED_LISTED < MAX_REJECTED_KEPT


# --- the index handed to the daemon matches indexing the records afresh ---------------------

_OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "junk", "delete"]),
                          st.sampled_from(["b", "c", "d", ME]),
                          st.sampled_from(["db", "web", "x"]),
                          st.integers(1, 3)), max_size=40)


@settings(max_examples=examples(300), deadline=None, database=None)
@given(_OPS)
def test_the_index_always_equals_indexing_the_records_afresh(ops) -> None:
    v = view(cap=2)
    for op, node, name, n in ops:
        key = record_key(PREFIX, node, name)
        if op == "put":
            v.put(rec(node, name, f"192.0.2.{n}"))
        elif op == "junk":
            v.put(kv(key, "junk"))
        else:
            v.delete(key)
        index = v.index()
        fresh = Snapshot((), v.records(), ME)
        assert index.by_key == fresh.remote
        assert {k: lst for k, lst in index.by_name.items()} == {
            k: lst for k, lst in fresh.remote_by_name.items() if lst}
        assert all(len(c) for c in index.by_name.values())
        by_node: dict[str, list[str]] = {}
        for c in v.records():
            by_node.setdefault(c.node, []).append(c.name)
        assert v.names == by_node
        assert not any(c.node == ME for c in index.by_key.values())


def test_a_snapshot_from_the_index_resolves_like_one_from_the_records() -> None:
    v = view()
    v.put(rec("c", "db", "192.0.2.8"))
    v.put(rec("b", "db", "192.0.2.7"))
    snap = Snapshot((), v.index(), ME, True)
    assert [c.node for c in snap.remote_by_name["db"]] == ["b", "c"]
    before = v.index()
    v.put(rec("b", "db", "192.0.2.9"))
    assert before.by_key["b", "db"].endpoints[0].ipv4 == "192.0.2.7"  # a copy: unchanged
    assert v.index().version > before.version


def test_the_view_says_which_names_changed_since_a_version() -> None:
    v = view()
    assert v.changed_since(-1) is None  # never taken: everything
    v.put(rec("b", "db"))
    v.put(rec("c", "cache"))
    taken = v.version
    assert v.changed_since(taken) == frozenset()
    v.put(rec("b", "db", "192.0.2.9"))
    v.delete(record_key(PREFIX, "c", "cache"))
    v.put(rec("b", "db", "192.0.2.9"))  # the same record again: no change
    assert v.changed_since(taken) == {"db", "cache"}
    assert v.changed_since(v.version - 1) == {"cache"}
    assert v.changed_since(v.version + 1) is None  # ahead: another view's version


def test_names_further_back_than_the_log_are_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    v = view()
    v._changed = cluster_module.deque(maxlen=3)
    for i in range(5):
        v.put(rec("b", f"db{i}"))
    assert v.changed_since(v.version - 3) == {"db2", "db3", "db4"}
    assert v.changed_since(v.version - 4) is None


def test_a_view_read_afresh_says_nothing_of_what_changed() -> None:
    old = view()
    old.put(rec("b", "db"))
    taken = old.version
    new = view()
    new.put(rec("b", "db", "192.0.2.9"))
    new.put(rec("b", "x"))
    new.follow(old)
    assert new.version > taken
    assert new.changed_since(taken) is None
    assert new.changed_since(new.version) == frozenset()
    new.put(rec("c", "y"))
    assert new.changed_since(new.version - 1) == {"y"}
