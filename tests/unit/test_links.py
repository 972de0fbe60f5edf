"""Link label parsing: `[node/]target[:alias][@network]` specs, each checked on its own."""

from __future__ import annotations

import string

import pytest
from builders import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostsyncd.core.links import (
    MAX_LABEL_CHARS,
    MAX_SPECS,
    SpecError,
    is_host_name,
    parse_links,
    parse_spec,
)
from hostsyncd.core.model import LinkSpec

# --- an oracle written from the contract, independent of the module's regexes ----------

_LABEL_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


def contract_host_name(name: str) -> bool:
    """Dot-separated labels of [A-Za-z0-9_-], none starting/ending with '-', <=63 / <=253."""
    if not 0 < len(name) <= 253:
        return False
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            return False
        if any(c not in _LABEL_CHARS for c in label):
            return False
        if label[0] == "-" or label[-1] == "-":
            return False
    return True


def is_safe_part(part: str) -> bool:
    """Nothing that could smuggle anything into a hosts line."""
    return all(
        32 < ord(c) < 127 and c not in "#/ \t\n\r,:@"
        for c in part
    ) and bool(part)


def only(value: str) -> tuple[LinkSpec, ...]:
    specs, errors = parse_links(value)
    assert errors == (), errors
    return specs


# --- valid labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("db", [LinkSpec("db", "db")]),
        ("db:database", [LinkSpec("db", "database")]),
        ("db@backend", [LinkSpec("db", "db", "backend")]),
        ("db:database@backend", [LinkSpec("db", "database", "backend")]),
        ("mysql:db,cache", [LinkSpec("mysql", "db"), LinkSpec("cache", "cache")]),
        ("my.db:db.internal", [LinkSpec("my.db", "db.internal")]),
        ("web_1:api_v2", [LinkSpec("web_1", "api_v2")]),
        ("db:_srv", [LinkSpec("db", "_srv")]),
        ("a-:b", [LinkSpec("a-", "b")]),
        ("DB:Database", [LinkSpec("DB", "Database")]),
        ("db@0123456789ab", [LinkSpec("db", "db", "0123456789ab")]),
        ("db@my_net.v1-x", [LinkSpec("db", "db", "my_net.v1-x")]),
        ("b/db", [LinkSpec("db", "db", node="b")]),
        ("host-2.dc1/db:data@macvlan", [LinkSpec("db", "data", "macvlan", "host-2.dc1")]),
        ("b/db a/db db", [LinkSpec("db", "db", node="b"), LinkSpec("db", "db", node="a"),
                          LinkSpec("db", "db")]),
    ],
)
def test_valid_specs(value: str, expected: list[LinkSpec]) -> None:
    assert list(only(value)) == expected


@pytest.mark.parametrize(
    "value",
    [
        "a,b,c,d,e,f",
        "a b c d e f",
        "a\tb\nc\r\nd, e ,f",
        "  a,,b ,\t, c\n\nd  e,,,f  ",
        ",a,b,c,d,e,f,",
    ],
)
def test_separators_commas_and_whitespace(value: str) -> None:
    assert [s.target for s in only(value)] == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize("value", ["", " ", ",", " , \t\n ,, "])
def test_empty_label_gives_nothing(value: str) -> None:
    assert parse_links(value) == ((), ())


def test_duplicate_identical_specs_collapse_keeping_first_position() -> None:
    specs = only("db cache db db:db cache@n db@n")
    assert specs == (
        LinkSpec("db", "db"),
        LinkSpec("cache", "cache"),
        LinkSpec("cache", "cache", "n"),
        LinkSpec("db", "db", "n"),
    )


def test_different_aliases_of_one_target_are_kept() -> None:
    assert only("db:a db:b") == (LinkSpec("db", "a"), LinkSpec("db", "b"))


def test_alias_length_limits() -> None:
    label63 = "a" * 63
    assert only(f"db:{label63}") == (LinkSpec("db", label63),)
    assert parse_links(f"db:{'a' * 64}")[0] == ()
    # 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters
    long_ok = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(long_ok) == 253
    assert only(f"db:{long_ok}") == (LinkSpec("db", long_ok),)
    too_long = long_ok + "b"
    assert len(too_long) == 254
    specs, errors = parse_links(f"db:{too_long}")
    assert specs == ()
    assert len(errors) == 1


def test_target_that_is_not_a_host_name_needs_an_alias() -> None:
    # A 64-char container name is a fine Docker name but not a host-name label.
    name = "c" * 64
    specs, errors = parse_links(name)
    assert specs == ()
    assert len(errors) == 1
    assert only(f"{name}:short") == (LinkSpec(name, "short"),)


# --- invalid specs: only that spec is skipped ------------------------------------------

INVALID = [
    "db#x",
    "#db",
    "../etc",
    "/db",
    "b/",
    "a/b/db",
    "a//db",
    "a..b/db",
    "-a/db",
    "b/db:x/y",
    "b/db@n/x",
    "b/:db",
    "b/@n",
    "b#/db",
    "a..b",
    "db:a..b",
    "db@n..m",
    "db\u00e9",
    "db:\u00e9",
    "d\u2028b",
    "d\x00b",
    "d\x7fb",
    "d\x1bb",
    "d\x08b",
    "db:",
    ":db",
    ":",
    "db@",
    "@net",
    "@",
    "db@n@m",
    "db@@m",
    "db:a:b",
    "db::a",
    "db:-a",
    "db:a-",
    "db:a.",
    "db:.a",
    "db:a.-b",
    "-db",
    ".db",
    "_db",
    "db@n/x",
    "db:a#",
    "db@-n",
    "db:a@",
    "db:a+b",
    "db:a*",
    "db;rm",
    "db:a'b",
    'db:a"b',
    "db:a=b",
    "db:a\\b",
]


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_spec_is_skipped_and_others_apply(bad: str) -> None:
    specs, errors = parse_links(f"first,{bad} last:alias")
    assert specs == (LinkSpec("first", "first"), LinkSpec("last", "alias"))
    assert len(errors) == 1
    assert errors[0].spec == bad
    assert errors[0].reason
    assert isinstance(parse_spec(bad), SpecError)


def test_spec_error_str_names_the_spec_and_shortens_long_ones() -> None:
    err = parse_spec("db#x")
    assert isinstance(err, SpecError)
    assert "'db#x'" in str(err)
    assert err.reason in str(err)
    long = parse_spec("x" * 100 + "#")
    assert isinstance(long, SpecError)
    assert len(str(long)) < 100 + len(long.reason) + 30
    assert "..." in str(long)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("a-b", True),
        ("a_b", True),
        ("_a", True),
        ("a.b.c", True),
        ("A9", True),
        ("-a", False),
        ("a-", False),
        ("a..b", False),
        (".a", False),
        ("a.", False),
        ("", False),
        ("a b", False),
        ("a\n", False),
        ("\u00e9", False),
        ("a" * 63, True),
        ("a" * 64, False),
        ("a/b", False),
        ("a#", False),
    ],
)
def test_is_host_name(name: str, ok: bool) -> None:
    assert is_host_name(name) is ok
    assert contract_host_name(name) is ok


def test_label_cut_at_the_length_limit_never_yields_a_truncated_spec() -> None:
    """A label longer than the limit is cut; the spec the cut falls into must not survive
    as a shorter, different name (it would link to a container nobody asked for)."""
    value = " " * (MAX_LABEL_CHARS - 4) + "database"
    # Not even a prefix of "database" ("data") survives the cut; the length is reported.
    assert parse_links(value) == (
        (), (SpecError(" " * 40 + "...", f"label longer than {MAX_LABEL_CHARS} chars"),)
    )


def test_label_exactly_at_the_limit_is_parsed_whole() -> None:
    value = " " * (MAX_LABEL_CHARS - 8) + "database"
    assert len(value) == MAX_LABEL_CHARS
    assert parse_links(value) == ((LinkSpec("database", "database"),), ())


def test_huge_label_does_not_raise_and_stays_bounded() -> None:
    value = ",".join(f"c{i}" for i in range(5000))
    specs, errors = parse_links(value)
    # The length error counts against MAX_SPECS too: 255 specs, in label order, then the
    # 256th token is refused and parsing stops.
    assert specs == tuple(LinkSpec(f"c{i}", f"c{i}") for i in range(MAX_SPECS - 1))
    assert errors == (
        SpecError(value[:40] + "...", f"label longer than {MAX_LABEL_CHARS} chars"),
        SpecError(f"c{MAX_SPECS - 1}", f"more than {MAX_SPECS} specs in one label"),
    )


def test_linkspec_str_round_trips() -> None:
    for spec in (
        LinkSpec("db", "db"),
        LinkSpec("db", "database"),
        LinkSpec("db", "db", "net"),
        LinkSpec("db", "x", "net"),
    ):
        assert parse_spec(str(spec)) == spec


# --- the property -----------------------------------------------------------------------

# Label text is built from atoms (cheap to draw, so 10,000 examples stay fast): real-looking
# names, the spec punctuation, separators, and everything a spec must not contain.
_NAMES = [
    "db", "mysql", "cache", "web-1", "api_v2", "redis.internal", "backend", "n1", "a", "Z9",
    "my-project-db-1", "0abc123", "x.y.z", "_srv", "-bad", "bad-", "a" * 63, "b" * 64,
]
_PUNCT = [":", ":", "@", "@", ".", "..", "-", "_"]
_SEPS = [",", " ", "\t", "\n", "\r\n", ", ", ",,"]
_HOSTILE = [
    "#", "/", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\r", "\u00e9", "\u00a0", "\u2026",
    "\u2028", "\ufeff", "\U0001f600", "\ud800", "'", '"', "\\", "=", "%", "*", "!",
]
_SPECS = ["db:data", "mysql@backend", "cache:c1@n1", ":alias", "@net", "web:www.example",
          "b/", "node-2/"]
_ATOMS = _NAMES * 3 + _SPECS * 2 + _PUNCT * 2 + _SEPS * 6 + _HOSTILE

label_st = st.one_of(
    st.lists(st.sampled_from(_ATOMS), max_size=14).map("".join),
    st.lists(st.sampled_from(_ATOMS), max_size=14).map("".join),
    st.lists(st.sampled_from(_ATOMS), max_size=14).map("".join),
    st.text(max_size=20),
)


def test_parse_links_property_never_raises_and_yields_only_safe_names() -> None:
    stats = {"examples": 0, "with_valid": 0, "with_errors": 0, "aliased": 0, "pinned": 0}

    @settings(
        max_examples=examples(10_000),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(label_st)
    def check(text: str) -> None:
        specs, errors = parse_links(text)
        stats["examples"] += 1
        stats["with_valid"] += bool(specs)
        stats["with_errors"] += bool(errors)
        stats["aliased"] += any(spec.alias != spec.target for spec in specs)
        stats["pinned"] += any(spec.network is not None for spec in specs)
        assert len(set(specs)) == len(specs)
        for spec in specs:
            assert spec.node is None or (is_safe_part(spec.node) and ".." not in spec.node)
            assert spec.node is None or spec.node + "/" in text
            assert contract_host_name(spec.alias), spec
            assert is_safe_part(spec.target), spec
            assert is_safe_part(spec.alias), spec
            assert spec.network is None or is_safe_part(spec.network), spec
            assert ".." not in spec.target
            assert spec.network is None or ".." not in spec.network
            # nothing is invented: every part was in the label
            assert spec.target in text
            assert spec.alias in text
            assert spec.network is None or spec.network in text
            # and the canonical form parses back to the same spec
            assert parse_links(str(spec)) == ((spec,), ())
        for err in errors:
            assert isinstance(err, SpecError)
            assert err.reason
            str(err)

    check()
    assert stats["examples"] >= examples(10_000) // 2
    # Not vacuous: a good share of the generated labels hold valid specs, and errors occur.
    assert stats["with_valid"] / stats["examples"] > 0.25, stats
    assert stats["with_errors"] / stats["examples"] > 0.25, stats
    assert stats["aliased"] / stats["examples"] > 0.02, stats
    assert stats["pinned"] / stats["examples"] > 0.02, stats
