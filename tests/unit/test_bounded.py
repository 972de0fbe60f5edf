"""What a container writes is never amplified: the label cache is bounded in bytes, and
what is logged or kept about a write carries only lines hostsyncd rendered, cut short."""

from __future__ import annotations

import pytest
from builders import LINKS, ctr, net

from hostsyncd import state
from hostsyncd.core.graph import Snapshot, _LabelCache, plan
from hostsyncd.core.hostsblock import MAX_FIELD_BYTES, changes
from hostsyncd.core.links import MAX_LABEL_CHARS, parse_links
from hostsyncd.core.model import HostLine

BEGIN = b"# BEGIN hostsyncd (managed by hostsyncd; edits inside are overwritten)\n"
END = b"# END hostsyncd\n"


def test_label_cache_is_bounded_in_bytes_not_entries() -> None:
    cache = _LabelCache(max_bytes=4 << 20)
    for i in range(300):
        value = f"db{i} " + "x" * (1 << 20)  # 300 distinct 1 MiB labels
        assert cache(value) == parse_links(value)
    assert cache.size <= 4 << 20
    assert 0 < len(cache) < 300


def test_label_cache_keys_are_cut_where_the_parser_stops_reading() -> None:
    cache = _LabelCache()
    long_a = "db " + "a" * MAX_LABEL_CHARS + "tail-a"
    long_b = "db " + "a" * MAX_LABEL_CHARS + "tail-b"
    assert cache(long_a) == parse_links(long_a) == parse_links(long_b)
    cache(long_b)
    assert len(cache) == 1  # one entry: the two differ only past what is read
    assert cache.size <= 2 * (MAX_LABEL_CHARS + 1) + 256


def test_label_cache_drops_the_least_recently_used() -> None:
    cache = _LabelCache(max_bytes=3 * (2 * 3 + 256))
    for value in ("aaa", "bbb", "ccc"):
        cache(value)
    cache("aaa")  # used again: now the newest
    cache("ddd")
    assert set(cache._entries) == {"aaa", "ccc", "ddd"}


def _plan(links: str = "db cache:kv") -> set[str]:
    """The aliases of web's links: the lines that can be ours."""
    snap = Snapshot([ctr("db", net("n", "10.0.0.2")), ctr("cache", net("n", "10.0.0.3")),
                     ctr("web", net("n", "10.0.0.9"), links=links)])
    found = plan(snap, snap.by_name["web"], LINKS)
    assert found is not None
    return {link.spec.alias for link in found.links}


def test_changes_count_foreign_lines_instead_of_copying_them() -> None:
    junk = b"".join(b"10.9.%d.%d\tjunk%d\n" % (i // 250, i % 250, i) for i in range(40000))
    before = b"127.0.0.1\tlocalhost\n" + BEGIN + b"10.0.0.1\tdb\n" + junk + END
    after = b"127.0.0.1\tlocalhost\n" + BEGIN + b"10.0.0.2\tdb\n10.0.0.3\tkv cache\n" + END
    added, removed, foreign = changes(_plan(), before, after)
    assert added == ["10.0.0.2\tdb", "10.0.0.3\tkv cache"]
    assert removed == ["10.0.0.1\tdb"]  # names one of the plan's aliases first: ours
    assert foreign == 40000


def test_changes_cut_each_field_at_max_field_bytes() -> None:
    # A container can also fill its block with lines that look like ours.
    forged = b"".join(b"10.8.%d.%d\tdb\n" % (i // 250, i % 250) for i in range(20000))
    before = BEGIN + forged + END
    after = BEGIN + b"10.0.0.2\tdb\n" + END
    added, removed, foreign = changes(_plan(), before, after)
    assert added == ["10.0.0.2\tdb"]
    assert foreign == 0
    assert sum(len(x) + 1 for x in removed) <= MAX_FIELD_BYTES + 40
    assert removed[-1].startswith("... and ") and removed[-1].endswith(" more")
    assert int(removed[-1].split()[2]) + len(removed) - 1 == 20000


def test_changes_of_a_file_without_a_block() -> None:
    after = b"127.0.0.1\tlocalhost\n" + BEGIN + b"10.0.0.2\tdb\n" + END
    assert changes(_plan(), b"127.0.0.1\tlocalhost\n", after) == (["10.0.0.2\tdb"], [], 0)


# --- keep mode's memory: the engine's word, in the daemon's own state file -------------

CID = "a" * 64


def test_kept_lines_go_through_the_state_file_unchanged() -> None:
    kept = {CID: {"db": (HostLine("10.0.0.2", ("db",)), HostLine("fd00::2", ("db", "mysql")))}}
    assert state.kept_from({"kept": state.kept_view(kept)}) == kept


@pytest.mark.parametrize(
    "bad",
    ["10.0.0.256\tdb", "not-an-ip\tdb", "10.0.0.2 db", "10.0.0.2\t", "10.0.0.2\tdb  x",
     "10.0.0.2\tdb x#y", "10.0.0.2\tdb\tx", "10.0.0.2\tdb -x", "10.0.0.2\tdb \u00e9",
     "fe80::1%a#b\tdb", "fe80::1%eth0\tdb", "", "\tdb", 7, None],
)
def test_kept_lines_that_are_not_plain_are_dropped(bad: object) -> None:
    assert state.kept_from({"kept": {CID: {"db": [bad]}}}) == {}
    assert state.kept_from({"kept": {CID: {"db": ["10.0.0.2\tdb", bad]}}}) == {}


@pytest.mark.parametrize(
    "data",
    [{}, {"kept": []}, {"kept": {"short": {"db": ["10.0.0.2\tdb"]}}},
     {"kept": {CID: {"bad alias": ["10.0.0.2\tdb"]}}}, {"kept": {CID: ["10.0.0.2\tdb"]}}],
)
def test_kept_memory_of_another_shape_is_ignored(data: dict) -> None:
    assert state.kept_from(data) == {}
