"""The fault suite's own judge of torn reads (`lib.torn`), with no engine: it must accept
every read that races one overwrite, and nothing else, or the concurrent-writers test
would pass a writer that leaves the file malformed."""

from __future__ import annotations

from .lib import torn

OLD = b"127.0.0.1\tlocalhost\n# BEGIN hostsyncd\n10.0.0.2\tst\n10.0.0.3\tfl\n# END hostsyncd\n"
NEW = b"127.0.0.1\tlocalhost\n# BEGIN hostsyncd\n10.0.0.2\tst\n# END hostsyncd\n"


def mixes(before: bytes, after: bytes) -> list[bytes]:
    size = max(len(before), len(after))
    a, b = before.ljust(size, b"\n"), after.ljust(size, b"\n")
    return [x[:k] + y[k:] for x, y in ((a, b), (b, a)) for k in range(size + 1)]


def test_every_read_racing_one_overwrite_is_torn():
    for before, after in ((OLD, NEW), (NEW, OLD)):
        for data in mixes(before, after):
            assert torn(data, before, after), data


def test_a_read_that_no_overwrite_explains_is_not_torn():
    foreign = NEW.replace(b"# END hostsyncd\n", b"10.0.0.9\tzz\n# END hostsyncd\n")
    assert not torn(foreign, OLD, NEW)
    two_ends = NEW + b"# END hostsyncd\n" + b"\n" * 4
    assert not torn(two_ends, OLD, NEW)  # longer than both: not a mix at the same offsets
    # New bytes at both ends, old ones between them, and a byte that neither holds.
    padded = NEW.ljust(len(OLD), b"\n")
    first = next(i for i, (x, y) in enumerate(zip(OLD, padded, strict=True)) if x != y)
    middle = padded[:first] + b"\n" + OLD[first + 1 : -3] + padded[-3:]
    assert middle != padded and not torn(middle, OLD, NEW)
    assert not torn(b"", OLD, NEW)
