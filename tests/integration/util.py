"""Reading hosts files and daemon logs the way the contract describes them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LINKS = "hostsyncd.links"
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
BEGIN = "# BEGIN hostsyncd"
END = "# END hostsyncd"
# The JSON log contract: "event" (message), "level", and for per-container entries
# "container" (the name) and "container_id" (the full id).
CONTAINER_KEY = "container_name"


def text_of(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read(path: Path) -> str:
    """The host-side file as text (undecodable bytes replaced)."""
    return text_of(path.read_bytes())


def split(text: str) -> tuple[str, list[str], int, int]:
    """(text outside every block, lines of the first block, BEGIN count, END count)."""
    outside: list[str] = []
    block: list[str] = []
    begins = ends = 0
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith(BEGIN):
            begins += 1
            inside = True
        elif line.startswith(END):
            ends += 1
            inside = False
        elif inside:
            if begins == 1:
                block.append(line.rstrip("\n"))
        else:
            outside.append(line)
    return "".join(outside), block, begins, ends


def block(text: str) -> list[str]:
    return split(text)[1]


def outside(text: str) -> str:
    return split(text)[0]


def begins(text: str) -> int:
    return split(text)[2]


def line(ip: str, alias: str, name: str | None = None) -> str:
    """`<ip>\\t<alias> <target-name>`, or `<ip>\\t<alias>` when alias == name."""
    return f"{ip}\t{alias}" if name is None or name == alias else f"{ip}\t{alias} {name}"


def same_lines(actual: Iterable[str], expected: Iterable[str]) -> bool:
    return sorted(actual) == sorted(expected)


def block_is(path: Path, expected: Iterable[str]):
    """A wait_until condition: the file's block holds exactly these lines (any order).

    Returns the file's text when it does, else False. An empty `expected` means "no block
    at all" (a file with no links gets no block).
    """
    want = sorted(expected)

    def check() -> str | bool:
        text = read(path)
        _, lines, n_begin, n_end = split(text)
        if not want:
            return text if n_begin == 0 and n_end == 0 else False
        ok = n_begin == 1 and n_end == 1 and sorted(lines) == want
        return text if ok else False

    check.__name__ = f"block of {path} == {want}"
    return check


def mentions(entry: dict[str, Any], needle: str) -> bool:
    return any(needle in str(value) for value in entry.values())


def reports_about(logs: Iterable[dict[str, Any]], container: str, needle: str) -> list[dict]:
    """Non-debug entries for this container (CONTAINER_KEY) mentioning `needle`."""
    return [
        e
        for e in logs
        if e.get(CONTAINER_KEY) == container
        and str(e.get("level", "")).lower() != "debug"
        and mentions(e, needle)
    ]


def read_metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}; fails on a file that does not parse."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def value(m: dict, name: str, **labels: str) -> float:
    return m[(name, tuple(sorted(labels.items())))]
