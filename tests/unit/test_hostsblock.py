"""The hostsyncd block inside a hosts file: bytes of any shape in, never a pile of blocks."""

from __future__ import annotations

import pytest
from builders import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostsyncd.core.hostsblock import (
    BEGIN,
    END,
    block_lines,
    merge,
    render_block,
    strip_block,
)
from hostsyncd.core.model import HostLine

PROPS = settings(
    max_examples=examples(1_500),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BASE = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n172.17.0.3\tabc123\n"
LINES = [HostLine("10.0.0.2", ("db",)), HostLine("10.0.0.3", ("data", "db"))]


def terminated(content: bytes) -> bytes:
    return content + b"\n" if content and not content.endswith(b"\n") else content


def marker_lines(content: bytes, marker: bytes) -> int:
    return sum(1 for line in content.splitlines() if line.startswith(marker))


# --- rendering ---------------------------------------------------------------------------


def test_render_block_shape() -> None:
    block = render_block(LINES)
    lines = block.split(b"\n")
    assert lines[0].startswith(BEGIN)
    assert lines[1:3] == [b"10.0.0.2\tdb", b"10.0.0.3\tdata db"]
    assert lines[3] == END
    assert lines[4] == b""  # ends with a newline
    assert block.endswith(END + b"\n")


def test_no_links_no_block() -> None:
    assert render_block([]) == b""
    assert render_block(iter([])) == b""


def test_render_block_accepts_a_generator() -> None:
    assert render_block(iter(LINES)) == render_block(LINES)


# --- merge and strip: examples ---------------------------------------------------------


def test_merge_appends_block_after_everything() -> None:
    block = render_block(LINES)
    assert merge(BASE, block) == BASE + block


def test_merge_replaces_an_existing_block_keeping_the_rest_byte_for_byte() -> None:
    before = b"# top comment\r\n127.0.0.1   localhost  \n"
    after = b"\n\n10.9.9.9 mine # my own edit\n\t\x00odd\xff line\n"
    old = render_block([HostLine("10.0.0.9", ("old",))])
    new = render_block(LINES)
    merged = merge(before + old + after, new)
    assert merged == before + after + new
    assert block_lines(merged) == [b"10.0.0.2\tdb", b"10.0.0.3\tdata db"]


def test_merge_moves_the_block_to_the_end() -> None:
    block = render_block(LINES)
    content = block + b"10.1.1.1\tafter\n"
    assert merge(content, block) == b"10.1.1.1\tafter\n" + block


def test_merge_terminates_an_unterminated_last_line() -> None:
    block = render_block(LINES)
    assert merge(b"127.0.0.1\tlocalhost", block) == b"127.0.0.1\tlocalhost\n" + block


def test_merge_into_empty_content() -> None:
    block = render_block(LINES)
    assert merge(b"", block) == block


@pytest.mark.parametrize("content", [b"", BASE, BASE + render_block(LINES), b"x", b"x\r"])
def test_merge_with_empty_block_is_strip(content: bytes) -> None:
    assert merge(content, b"") == strip_block(content)


def test_merge_with_empty_block_removes_our_block() -> None:
    assert merge(BASE + render_block(LINES), b"") == BASE


def test_begin_without_end_runs_to_the_end() -> None:
    content = BASE + BEGIN + b"\n10.0.0.2\tdb\n10.0.0.3\tforged\n"
    assert strip_block(content) == BASE


def test_stray_end_line_is_dropped() -> None:
    content = BASE + END + b"\n" + b"10.1.1.1\tkeep\n"
    assert strip_block(content) == BASE + b"10.1.1.1\tkeep\n"


def test_several_blocks_are_all_stripped() -> None:
    block = render_block(LINES)
    content = block + b"a\n" + block + b"b\n" + block
    assert strip_block(content) == b"a\nb\n"
    merged = merge(content, block)
    assert merged == b"a\nb\n" + block
    assert marker_lines(merged, BEGIN) == 1


def test_a_begin_inside_a_block_does_not_end_it() -> None:
    # Everything from a BEGIN line to the next END line is the block, forged BEGINs included.
    content = b"a\n" + BEGIN + b"\nin1\n" + BEGIN + b"\nin2\n" + END + b"\nb\n"
    assert strip_block(content) == b"a\nb\n"


def test_marker_not_at_line_start_is_plain_content() -> None:
    content = b"10.0.0.1 x " + BEGIN + b"\n  " + END + b"\n"
    assert strip_block(content) == content
    assert merge(content, b"") == content


def test_marker_prefix_lines_count_as_markers() -> None:
    # "a line starting with" the marker: extra text after it does not matter
    content = b"a\n" + BEGIN + b"-forged stuff\nin\n" + END + b" trailing\nb\n"
    assert strip_block(content) == b"a\nb\n"


def test_content_without_markers_is_returned_as_is() -> None:
    content = b"\x00\xff\r\n weird \r bytes"
    assert strip_block(content) == content
    assert merge(content, b"") == content


def test_block_lines_reads_the_first_block_only() -> None:
    first = render_block([HostLine("10.0.0.1", ("a",))])
    second = render_block([HostLine("10.0.0.2", ("b",))])
    assert block_lines(BASE + first + b"x\n" + second) == [b"10.0.0.1\ta"]


def test_block_lines_stops_at_a_nested_begin() -> None:
    content = BEGIN + b"\n10.0.0.1\ta\n" + BEGIN + b"\n10.0.0.2\tb\n" + END + b"\n"
    assert block_lines(content) == [b"10.0.0.1\ta"]


def test_block_lines_without_block() -> None:
    assert block_lines(BASE) == []
    assert block_lines(b"") == []


def test_block_lines_of_unterminated_block() -> None:
    assert block_lines(BEGIN + b"\n10.0.0.1\ta\n10.0.0.2\tb") == [b"10.0.0.1\ta", b"10.0.0.2\tb"]


def test_crlf_file_keeps_its_line_ends() -> None:
    content = b"127.0.0.1\tlocalhost\r\n::1\tlocalhost\r\n"
    block = render_block(LINES)
    merged = merge(content, block)
    assert merged == content + block
    assert merge(merged, block) == merged


# --- properties over arbitrary bytes ----------------------------------------------------

_FRAGMENTS = [
    BEGIN,
    END,
    BEGIN + b" (managed by hostsyncd; edits inside are overwritten)\n",
    END + b"\n",
    b"# BEGIN",
    b"# END",
    b"# BEGIN hostsync",
    b"# END hostsyn",
    b"hostsyncd",
    b"#",
    b" ",
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"\x00",
    b"\xff\xfe\x80",
    b"\xc3",
    b"127.0.0.1\tlocalhost\n",
    b"10.0.0.2\tdb\n",
    b"\x0b\x0c\x1c\x85",
]

# Every byte value, so NULs, invalid UTF-8 and lone \r show up without a slow st.binary().
_BYTES = [bytes([b]) for b in range(256)]
content_st = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS * 4 + _BYTES), max_size=24).map(b"".join),
    st.binary(max_size=40),
)

_NAMES = ["db", "data", "cache", "web-1", "api_v2", "redis.internal", "x", "a" * 63]
_IPS = ["10.0.0.2", "172.17.0.3", "0.0.0.0", "255.255.255.255", "fd00::2", "2001:db8::1", "::1"]
host_line_st = st.builds(
    HostLine,
    ip=st.sampled_from(_IPS),
    names=st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map(tuple),
)
lines_st = st.lists(host_line_st, max_size=5)


@PROPS
@given(content_st, lines_st)
def test_merge_properties(content: bytes, lines: list) -> None:
    """One draw, every property of merge (drawing is the costly part)."""
    block = render_block(lines)
    merged = merge(content, block)
    stripped = strip_block(content)
    if not block:
        assert merged == stripped
        assert marker_lines(merged, BEGIN) == marker_lines(merged, END) == 0
        assert block_lines(merged) == []
        return
    # everything but the block is kept, the last line terminated
    assert strip_block(merged) == terminated(stripped)
    # the block comes after everything else
    assert merged == terminated(stripped) + block
    # merging again changes nothing
    assert merge(merged, block) == merged
    # one BEGIN line and one END line, however many markers came in
    assert marker_lines(merged, BEGIN) == 1
    assert marker_lines(merged, END) == 1
    # and what was written reads back
    assert block_lines(merged) == [line.render().encode("ascii") for line in lines]


@PROPS
@given(content_st, lines_st, lines_st)
def test_blocks_never_pile_up(content: bytes, first: list, second: list) -> None:
    block1, block2 = render_block(first), render_block(second)
    twice = merge(merge(content, block1), block2)
    if block2 or not block1:
        assert twice == merge(content, block2)
    else:
        # Taking the block away again leaves the newline merge gave the last line.
        assert twice == terminated(strip_block(content))


@PROPS
@given(content_st)
def test_strip_is_idempotent_and_leaves_no_marker_lines(content: bytes) -> None:
    stripped = strip_block(content)
    assert strip_block(stripped) == stripped
    assert marker_lines(stripped, BEGIN) == 0
    assert marker_lines(stripped, END) == 0


@PROPS
@given(content_st, content_st, lines_st)
def test_everything_outside_the_block_is_kept_byte_for_byte(
    before: bytes, after: bytes, lines: list
) -> None:
    # Marker-free content on both sides of one of our blocks, placed on a line of its own.
    before, after = terminated(strip_block(before)), strip_block(after)
    block = render_block(lines)
    # The one documented exception: nothing but newlines and NULs after the last block is
    # debris (crash padding, a racing writer's truncate), dropped with the block.
    kept_after = after if after.strip(b"\0\n") or not block else b""
    assert strip_block(before + block + after) == before + kept_after


@pytest.mark.parametrize("debris", [b"\n", b"\n\n\n", b"\0", b"\0\n", b"\n\0\n"])
def test_blank_and_nul_debris_after_the_block_goes_with_it(debris: bytes) -> None:
    docker = b"127.0.0.1\tlocalhost\n"
    block = render_block([HostLine("10.0.0.2", ("db",))])
    assert strip_block(docker + block + debris) == docker
    assert merge(docker + block + debris, block) == docker + block
    # Anything else after the block is the container's, and stays.
    assert strip_block(docker + block + b"\0x\n") == docker + b"\0x\n"
    assert strip_block(docker + block + b"X\n") == docker + b"X\n"
