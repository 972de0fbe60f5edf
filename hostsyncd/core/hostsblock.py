"""Find, strip and render hostsyncd's block inside a hosts file.

The file belongs to the container, which may write anything into it: the functions here
take bytes of any shape and never fail. A block runs from a line starting with BEGIN to the
next line starting with END. A BEGIN without an END runs to the end of the file, and a
stray END line is dropped too: both can only be ours, torn by a racing writer, or forged,
and keeping either would let blocks pile up. What a racing writer tore off a block of ours
goes with it (see strip_block). Everything else is kept byte for byte, except lines of
nothing but newlines and NULs right before the block or after the last one.

Imports: core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from hostsyncd.core.model import HostLine

BEGIN = b"# BEGIN hostsyncd"
END = b"# END hostsyncd"
_BEGIN_LINE = BEGIN + b" (managed by hostsyncd; edits inside are overwritten)\n"
_END_LINE = END + b"\n"
_PIECE_ENDS = (b"d\n", b"d")  # how every piece of an END line ends, terminated or not


def strip_block(content: bytes, ours: Sequence[bytes] = ()) -> bytes:
    """The content with every hostsyncd block and stray marker line removed.

    Newlines and NUL bytes between the last block and the end of the file go with it:
    they are debris, left by a crash between writing and truncating, or by another writer
    whose truncate extended the file, and never anything a resolver reads.

    So does what a racing writer tore off one of `ours` (the blocks this file may hold from
    us). A writer that puts a shorter file over ours, then truncates, leaves for a moment
    its content followed by the end of our block, whose BEGIN it overwrote. Written back
    around, those lines would stay outside the block for good, addresses and all. They show
    as a stray END, or the end of one: the lines of ours just before it go too, down to
    one that may be the cut end of a line of ours (after a hole of NULs, if the file
    shrank under a write). Its truncate can also cut a block we wrote meanwhile inside the
    BEGIN line: an unterminated last line that is the start of one goes.
    """
    last = content[max(content.rfind(b"\n"), content.rfind(b"\r")) + 1 :]  # as splitlines
    cut_begin = last != b"" and _BEGIN_LINE.startswith(last)
    if not (cut_begin or BEGIN in content or END in content or b"d\n" in content
            or content.endswith(_PIECE_ENDS)):
        return content
    lines: set[bytes] | None = None  # of ours: wanted only for a stray END
    kept: list[bytes] = []
    inside = False
    tail_from: int | None = None
    run_from = 0  # the first of the lines kept since the last marker
    for line in content.splitlines(keepends=True):
        if inside:
            inside = not line.startswith(END)
            if not inside:
                tail_from = run_from = len(kept)
        elif line.startswith(BEGIN):
            inside = True
        elif line.startswith(END) or (line.endswith(_PIECE_ENDS) and _torn_end(line)):
            if lines is None:
                lines = {ln for block in ours for ln in block.splitlines(keepends=True)}
            del kept[_torn_from(kept, run_from, lines) :]
            run_from = len(kept)
        else:
            kept.append(line)
    if cut_begin and not inside:
        kept.pop()
    if tail_from is not None and not b"".join(kept[tail_from:]).strip(b"\0\n"):
        del kept[tail_from:]
    return b"".join(kept)


def _torn_end(line: bytes) -> bool:
    """Whether a line that ends like an END line (_PIECE_ENDS) is what a racing writer left
    of one, after NULs if it left a hole: no resolver reads a line like "hostsyncd".
    Terminated or not: the merge terminates a last line."""
    piece = line.lstrip(b"\0")
    if not piece.endswith(b"\n"):
        piece += b"\n"
    return piece.startswith(END) or _END_LINE.endswith(piece)


def _torn_from(kept: list[bytes], start: int, lines: set[bytes]) -> int:
    """Where the lines of ours before a stray END begin, within kept[start:]: whole lines of
    a block of ours, and before them at most one that ends like one."""
    at = len(kept)
    while at > start and kept[at - 1] in lines:
        at -= 1
    if at > start:
        # A blank line stays: no resolver reads it, and any file may hold one.
        cut = kept[at - 1].lstrip(b"\0")
        if cut != b"\n" and any(line.endswith(cut) for line in lines):
            at -= 1
    return at


def block_lines(content: bytes) -> list[bytes]:
    """The lines inside the first block, without line ends: what hostsyncd wrote last."""
    out: list[bytes] = []
    inside = False
    for line in content.splitlines():
        if inside:
            if line.startswith(END) or line.startswith(BEGIN):
                break
            out.append(line)
        elif line.startswith(BEGIN):
            inside = True
    return out


def render_block(lines: Iterable[HostLine]) -> bytes:
    """The block for these lines, or nothing when there are none."""
    body = b"".join(line.render().encode("ascii") + b"\n" for line in lines)
    return _BEGIN_LINE + body + _END_LINE if body else b""


def merge(content: bytes, block: bytes, earlier: bytes = b"") -> bytes:
    """Replace any block in content with this one, placed after everything else. `earlier`
    is the block the file last had from us: a racing writer may have torn that one.

    The block starts on a line of its own, right after the last line that is not blank:
    lines of nothing but newlines and NULs before it go. No resolver reads them, and a
    write of ours that lost a race to a truncate can leave its padding there (see
    writer._overwrite). Other lines are kept whole, so what a later merge sees is the same.
    """
    rest = strip_block(content, (block, earlier))
    if not block:
        return rest
    text = len(rest.rstrip(b"\0\n"))
    if not text:
        return block
    # The last line's own NULs are kept with it; after a CR they are a line of their own.
    nuls = b"" if rest[text - 1 : text] == b"\r" else rest[text:].partition(b"\n")[0]
    return b"".join((rest[:text], nuls, b"\n", block))


def own_addresses(content: bytes, hostname: str) -> tuple[str, str]:
    """(IPv4, IPv6) of the lines that name only this host name: the entry Docker writes
    for a container itself when it starts. Empty strings for what is not there."""
    ipv4 = ipv6 = ""
    wanted = [hostname.encode("ascii", "replace")]
    for line in strip_block(content).splitlines():
        fields = line.split()
        if len(fields) != 2 or fields[1:] != wanted:
            continue
        try:
            address = ipaddress.ip_address(fields[0].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            continue
        if address.version == 4:
            ipv4 = str(address)
        elif not (address.is_link_local or address.is_loopback):
            ipv6 = str(address)
    return ipv4, ipv6


# The most bytes of lines one logged or kept field carries.
MAX_FIELD_BYTES = 4096


def untidy(content: bytes) -> bool:
    """Whether a file holds NUL bytes or invalid UTF-8 (handled as bytes all the same)."""
    if b"\0" in content:
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def changes(
    aliases: Iterable[str], before: bytes, after: bytes
) -> tuple[list[str], list[str], int]:
    """(lines added, lines of ours removed, count of other lines removed) between two
    versions of a file's block.

    The block after a write is all ours. What it held before is whatever was in the
    file: only lines naming one of `aliases` first can be ours, and anything else (a
    container's junk, however much) is only counted. Each list is cut at MAX_FIELD_BYTES,
    with a last entry saying how many lines were left out: nothing a container wrote is
    copied into logs, the state file or memory beyond that.
    """
    old, new = block_lines(before), block_lines(after)
    old_set, new_set = set(old), set(new)
    ours = {alias.encode("ascii") for alias in aliases}
    removed: list[bytes] = []
    foreign = 0
    for raw in dict.fromkeys(old):
        if raw in new_set:
            continue
        _, tab, names = raw.partition(b"\t")
        if tab and names.split(b" ", 1)[0] in ours:
            removed.append(raw)
        else:
            foreign += 1
    return _capped([ln for ln in new if ln not in old_set]), _capped(removed), foreign


def _capped(lines: list[bytes]) -> list[str]:
    out: list[str] = []
    size = 0
    for i, raw in enumerate(lines):
        size += len(raw) + 1
        if size > MAX_FIELD_BYTES:
            out.append(f"... and {len(lines) - i} more")
            break
        out.append(raw.decode("ascii", "replace"))
    return out
