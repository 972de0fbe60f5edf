"""The hostsyncd block inside a hosts file: bytes of any shape in, never a pile of blocks."""

from __future__ import annotations

from collections.abc import Callable

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


def before_block(content: bytes) -> bytes:
    """What merge keeps of content (stripped) before a block: its lines up to the last one
    that holds more than newlines and NULs, terminated."""
    lines = content.splitlines(keepends=True)
    while lines and not lines[-1].strip(b"\0\n"):
        lines.pop()
    return terminated(b"".join(lines))


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
    stripped = strip_block(content, (block,))  # what a racing writer tore off it goes too
    if not block:
        assert merged == stripped
        assert marker_lines(merged, BEGIN) == marker_lines(merged, END) == 0
        assert block_lines(merged) == []
        return
    # everything but the block is kept up to its last line that is not blank, terminated
    assert strip_block(merged) == before_block(stripped)
    # the block comes after everything else
    assert merged == before_block(stripped) + block
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
    """A block merged over another replaces it: what is outside is what the first merge
    kept. (The second knows the first block as the file's earlier one, as the daemon does.)"""
    block1, block2 = render_block(first), render_block(second)
    twice = merge(merge(content, block1), block2, block1)
    kept = strip_block(content, (block1,))
    assert twice == (before_block(kept) if block1 or block2 else kept) + block2
    assert marker_lines(twice, BEGIN) == marker_lines(twice, END) == (1 if block2 else 0)


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


# --- what a racing writer tears off a block of ours ----------------------------------------
# A writer that puts a shorter file over ours and truncates after (write, then truncate)
# leaves for a moment its content followed by the end of our block. Merged back as it was,
# that end stayed outside the block for good, addresses and all: found in CI as a flood
# test that never converged (tests/faults/test_lost_events.py).

OLD = render_block([HostLine("10.0.0.9", ("db",))])
NEW = render_block(LINES)
FORGED = b"# BEGIN hostsyncd\n10.9.9.9\tforged\n# END hostsyncd\n"


def _misses(
    make: Callable[[int], bytes], block: bytes, earlier: bytes = b"", want: bytes = BASE
) -> list[int]:
    """The cut points k at which merging make(k) does not give want + block."""
    cuts = range(max(len(OLD), len(NEW)))
    return [k for k in cuts if merge(make(k), block, earlier) != want + block]


def test_the_end_of_a_block_a_shorter_rewrite_left_behind_goes_at_every_cut() -> None:
    assert _misses(lambda k: BASE + NEW[k:], NEW) == []
    # with the racing writer's own (forged) block in front of it
    assert _misses(lambda k: BASE + FORGED + NEW[k:], NEW) == []


def test_the_torn_end_of_the_block_the_file_last_had_goes_when_the_address_moved() -> None:
    assert _misses(lambda k: BASE + OLD[k:], NEW, earlier=OLD) == []
    # Without knowing the earlier block only its markers go: its address stays, the stale
    # line this guards against.
    assert b"10.0.0.9\tdb\n" in merge(BASE + OLD[40:], NEW)


def test_a_torn_end_after_a_hole_of_nuls_goes() -> None:
    # The file shrank under an overwrite of ours: pwrite past the end leaves NULs.
    assert _misses(lambda k: BASE + b"\0" * 17 + NEW[k:], NEW) == []


def test_a_torn_end_with_a_line_appended_after_it_goes_and_the_line_stays() -> None:
    appended = b"172.18.0.4\tabc123\n"
    # All but the cuts right at a newline of ours, which leave a blank line in the middle:
    # no resolver reads it, and nothing tells it from one of theirs.
    missed = _misses(lambda k: BASE + NEW[k:] + appended, NEW, want=BASE + appended)
    assert missed == [k for k in range(len(NEW)) if NEW[k : k + 1] == b"\n"]
    assert all(merge(BASE + NEW[k:] + appended, NEW) == BASE + b"\n" + appended + NEW
               for k in missed)


def test_a_block_a_racing_truncate_cut_short_goes_at_every_cut() -> None:
    assert [k for k in range(1, len(NEW)) if merge(BASE + NEW[:k], NEW) != BASE + NEW] == []
    # in a file whose lines end in CR alone, as splitlines reads it
    assert strip_block(b"a\rb\r# BEG") == b"a\rb\r"


def test_a_stray_end_line_ended_by_a_cr_goes() -> None:
    assert strip_block(BASE + END + b"\r") == BASE
    assert strip_block(BASE + END + b" x\r") == BASE


def test_padding_a_write_of_ours_left_after_losing_a_race_goes() -> None:
    # Our overwrite appends blank lines first; a truncate in between leaves them alone.
    assert merge(BASE + b"\n" * 40, NEW) == BASE + NEW
    assert merge(BASE + b"\n\0\n" + NEW, NEW) == BASE + NEW


def test_lines_that_are_not_ours_stay_before_a_stray_end() -> None:
    mine = b"10.1.1.1\tmine\n"
    assert merge(BASE + mine + END + b"\n", NEW) == BASE + mine + NEW
    # A torn end glued to an unterminated line of theirs: the whole lines of ours go, the
    # glued line is no piece of ours and stays.
    assert NEW[60:].startswith(b"erwritten)\n")
    assert merge(BASE + b"X" + NEW[60:], NEW) == BASE + b"Xerwritten)\n" + NEW


@pytest.mark.parametrize(
    "last", [b"#x", b"# END", b"10.1.1.1\tdb", b"10.1.1.1\tfood", b"d x\n", b"\n"]
)
def test_a_last_line_that_is_no_piece_of_a_marker_stays(last: bytes) -> None:
    assert strip_block(BASE + last) == BASE + last
    assert merge(BASE + last, NEW) == (BASE + last).rstrip(b"\n") + b"\n" + NEW


@PROPS
@given(content_st, lines_st, lines_st)
def test_merge_with_an_earlier_block_is_stable(content: bytes, lines: list, old: list) -> None:
    block, earlier = render_block(lines), render_block(old)
    merged = merge(content, block, earlier)
    assert merge(merged, block, earlier) == merged
    # the next pass knows this block as the earlier one
    assert merge(merged, block, block) == merged
    assert merged.endswith(block)


def test_what_is_left_of_an_end_goes_terminated_or_not_and_anywhere_in_the_file() -> None:
    for piece in (b"hostsyncd", b"d", b"END hostsyncd", b"\0\0ncd"):
        assert strip_block(BASE + piece) == BASE
        assert strip_block(BASE + piece + b"\n") == BASE
        assert strip_block(piece + b"\n" + BASE) == BASE
    # a line that only holds one is the container's
    assert strip_block(BASE + b"X# END hostsyncd\n") == BASE + b"X# END hostsyncd\n"
    assert strip_block(BASE + b"hostsyncd x\n") == BASE + b"hostsyncd x\n"


def test_a_torn_end_at_the_very_start_of_the_file_goes() -> None:
    # the racing writer wrote nothing before it (an emptied file, then ours torn)
    assert merge(NEW[60:], NEW) == NEW
    assert merge(b"\0" * 9 + NEW[60:], NEW) == NEW


def test_only_blank_lines_and_nuls_go_before_the_block() -> None:
    assert merge(BASE + b"10.1.1.1\tX\n\n\0\n", NEW) == BASE + b"10.1.1.1\tX\n" + NEW
    assert merge(BASE + b"10.1.1.1\tX \n", NEW) == BASE + b"10.1.1.1\tX \n" + NEW
    # a line's own NULs stay with it, terminated or not
    assert merge(BASE + b"10.1.1.1\tX\0\n\0\n", NEW) == BASE + b"10.1.1.1\tX\0\n" + NEW
    assert merge(BASE + b"10.1.1.1\tX\0", NEW) == BASE + b"10.1.1.1\tX\0\n" + NEW
    assert merge(BASE + b"10.1.1.1\tX\r\0", NEW) == BASE + b"10.1.1.1\tX\r\n" + NEW


def test_a_second_stray_end_does_not_reach_past_the_first() -> None:
    # The first END's walk stops after the one cut line; what came before that cut is not
    # the end of the same block, and a second END right after does not take it either.
    ours = b"10.0.0.2\tdb\n"
    content = BASE + ours + b"b\n" + ours + END + b"\n" + END + b"\n"
    assert strip_block(content, (NEW,)) == BASE + ours
