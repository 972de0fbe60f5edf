"""The persistent map behind other nodes' records: it answers like a dict, an update never
changes a map already handed out, and an update copies one bucket, not the map."""

from __future__ import annotations

from builders import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsyncd.core import persistent
from hostsyncd.core.persistent import PersistentMap

_KEYS = st.one_of(st.text(max_size=4), st.tuples(st.sampled_from("abc"), st.text(max_size=3)))
_OPS = st.lists(st.tuples(st.booleans(), _KEYS, st.integers()), max_size=60)


@settings(max_examples=examples(300), deadline=None, database=None)
@given(st.dictionaries(_KEYS, st.integers(), max_size=20), _OPS)
def test_answers_like_a_dict_and_old_versions_never_change(start, ops) -> None:
    m: PersistentMap = PersistentMap(start)
    model = dict(start)
    history = [(m, dict(model))]
    for put, key, value in ops:
        if put:
            m = m.set(key, value)
            model[key] = value
        else:
            m = m.without(key)
            model.pop(key, None)
        history.append((m, dict(model)))
        assert len(m) == len(model)
        assert dict(m.items()) == model
        assert m == model
        assert (key in m) == (key in model)
        assert m.get(key, "none") == model.get(key, "none")
    for old, then in history:  # every version handed out still says what it said
        assert dict(old.items()) == then and len(old) == len(then)


def test_a_missing_key_raises_and_removing_it_returns_the_same_map() -> None:
    m: PersistentMap = PersistentMap({("b", "db"): 1})
    try:
        m["nope"]
    except KeyError:
        pass
    else:
        raise AssertionError("a missing key must raise KeyError")
    assert m.without("nope") is m
    assert m.get("nope") is None


def test_an_update_shares_every_bucket_but_one() -> None:
    m: PersistentMap = PersistentMap((f"r{n}", n) for n in range(10_000))
    changed = m.set("r7", -1)
    shared = sum(a is b for a, b in zip(m._buckets, changed._buckets, strict=True))
    assert shared == persistent.BUCKETS - 1
    assert m["r7"] == 7 and changed["r7"] == -1
