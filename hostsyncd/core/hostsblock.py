"""Find, strip and render hostsyncd's block inside a hosts file.

The file belongs to the container, which may write anything into it: the functions here
take bytes of any shape and never fail. A block runs from a line starting with BEGIN to the
next line starting with END. A BEGIN without an END runs to the end of the file, and a
stray END line is dropped too: both can only be ours, torn by a racing writer, or forged,
and keeping either would let blocks pile up. Everything else is kept byte for byte, except
newline or NUL debris between the last block and the end of the file.

Imports: core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from hostsyncd.core.model import HostLine

BEGIN = b"# BEGIN hostsyncd"
END = b"# END hostsyncd"
_BEGIN_LINE = BEGIN + b" (managed by hostsyncd; edits inside are overwritten)\n"
_END_LINE = END + b"\n"


def strip_block(content: bytes) -> bytes:
    """The content with every hostsyncd block and stray marker line removed.

    Newlines and NUL bytes between the last block and the end of the file go with it:
    they are debris, left by a crash between writing and truncating, or by another writer
    whose truncate extended the file, and never anything a resolver reads.
    """
    if BEGIN not in content and END not in content:
        return content
    kept: list[bytes] = []
    inside = False
    tail_from: int | None = None
    for line in content.splitlines(keepends=True):
        if inside:
            inside = not line.startswith(END)
            if not inside:
                tail_from = len(kept)
        elif line.startswith(BEGIN):
            inside = True
        elif not line.startswith(END):
            kept.append(line)
    if tail_from is not None and not b"".join(kept[tail_from:]).strip(b"\0\n"):
        del kept[tail_from:]
    return b"".join(kept)


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


def merge(content: bytes, block: bytes) -> bytes:
    """Replace any block in content with this one, placed after everything else.

    An unterminated last line gets its newline so the block starts on a line of its own.
    """
    rest = strip_block(content)
    if not block:
        return rest
    if rest and not rest.endswith(b"\n"):
        rest += b"\n"
    return rest + block


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
