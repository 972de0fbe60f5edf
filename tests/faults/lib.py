"""Helpers for the fault suite: what a valid hosts file is, background churn, polling."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration.util import BEGIN, END, split

BEGIN_B, END_B = BEGIN.encode(), END.encode()
_NAME = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def invalid_lines(data: bytes) -> list[bytes]:
    """Lines that a hosts file must not hold: anything but blank lines, comments and
    `<ip>\\t<name>[ <name>...]` with a valid address and plain host names."""
    bad = []
    for raw in data.split(b"\n"):
        if raw.strip(b" ") == b"" and b"\0" not in raw:
            continue
        if raw.startswith(b"#") and b"\0" not in raw and raw.isascii():
            continue
        ip, tab, names = raw.partition(b"\t")
        try:
            ipaddress.ip_address(ip.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            bad.append(raw)
            continue
        if not tab or not names or not all(_NAME.fullmatch(n) for n in names.split(b" ")):
            bad.append(raw)
    return bad


def markers(data: bytes) -> tuple[int, int]:
    """(lines starting with BEGIN, lines starting with END)."""
    lines = data.split(b"\n")
    return (sum(ln.startswith(BEGIN_B) for ln in lines), sum(ln.startswith(END_B) for ln in lines))


def well_formed_block(data: bytes) -> bool:
    """No block, or exactly one BEGIN followed later by exactly one END."""
    lines = data.split(b"\n")
    b = [i for i, ln in enumerate(lines) if ln.startswith(BEGIN_B)]
    e = [i for i, ln in enumerate(lines) if ln.startswith(END_B)]
    return (not b and not e) or (len(b) == 1 and len(e) == 1 and b[0] < e[0])


def docker_lines(data: bytes) -> list[str]:
    """The non-blank lines outside the block, in order: Docker's part of the file."""
    text = data.decode("utf-8", errors="replace")
    return [ln for ln in split(text)[0].splitlines() if ln.strip()]


def block_of(data: bytes) -> list[str]:
    return split(data.decode("utf-8", errors="replace"))[1]


def expected_file(docker_part: bytes, block: list[str]) -> bytes:
    """What hostsyncd's contract says the file holds: Docker's bytes, then the block."""
    if not block:
        return docker_part
    body = "".join(f"{ln}\n" for ln in block)
    return (
        docker_part
        + b"# BEGIN hostsyncd (managed by hostsyncd; edits inside are overwritten)\n"
        + body.encode()
        + b"# END hostsyncd\n"
    )


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = ln.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class Loop:
    """Runs `step()` over and over on a thread until stopped; pause() waits for a step
    boundary. An exception in a step stops the loop and is raised again by stop()."""

    step: Callable[[], Any]
    name: str = "loop"
    steps: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _trace: str = ""
    _thread: threading.Thread | None = None

    def start(self) -> Loop:
        self._go.set()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._go.is_set():
                    self._idle.set()
                    self._go.wait(0.05)
                    continue
                self._idle.clear()
                self.step()
                self.steps += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the test by stop()
            self._error = exc
            self._trace = traceback.format_exc()
        finally:
            self._idle.set()

    def pause(self, timeout: float = 30) -> None:
        self._go.clear()
        self._idle.clear()
        if not self._idle.wait(timeout):
            raise AssertionError(f"{self.name} did not pause within {timeout}s")
        self.check()

    def resume(self) -> None:
        self.check()
        self._go.set()

    def check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"{self.name} failed:\n{self._trace}") from self._error

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(30)
        self.check()


_HELD_READS = 16  # bad reads held at most, waiting for the next good one


def torn(data: bytes, before: bytes, after: bytes) -> bool:
    """Whether `data` is what a read racing one overwrite from `before` to `after` can
    return: a prefix of one and the rest of the other, at the same offsets. The writer pads
    the shorter content with newlines to the other's length while it overwrites (and
    truncates after), so both are padded to the length of the read."""
    size = len(data)
    if len(before) > size or len(after) > size:
        return False
    before, after = before.ljust(size, b"\n"), after.ljust(size, b"\n")
    for head, tail in ((after, before), (before, after)):
        if _common_prefix(data, head) + _common_prefix(data[::-1], tail[::-1]) >= size:
            return True
    return False


def _common_prefix(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))  # fmt: skip


@dataclass
class Poller:
    """Reads a file as fast as it can on a thread; `classify(at, bytes) -> set of flags`
    says what is wrong with each read (`at`: time.monotonic() just before the read).
    Counts reads, flagged reads and windows (runs of consecutive flagged reads) per flag,
    with the longest window in seconds.

    With `torn_flag`, a read carrying that flag is held until the next read without it. If
    it is the one kind of bad read that no writer can rule out, a read that raced a single
    overwrite (see `torn`), it is counted as "torn" instead: the kernel copies a write into
    the page cache without stopping readers. Any other bad read keeps its flag."""

    path: Path
    classify: Callable[[float, bytes], set[str]]
    reads: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)
    longest: dict[str, float] = field(default_factory=dict)
    # (flag, start, seconds) of every window longer than `long_window` seconds
    long: list[tuple[str, float, float]] = field(default_factory=list)
    long_window: float = 0.1
    # The first few reads of each flag, as read (cut at 2 KiB): what a failure looked like.
    examples: dict[str, list[str]] = field(default_factory=dict)
    torn_flag: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        open_since: dict[str, float] = {}
        held: list[tuple[float, bytes, set[str]]] = []  # reads flagged torn_flag, in order
        last_good: bytes | None = None
        try:
            while not self._stop.is_set():
                at = time.monotonic()
                try:
                    data = self.path.read_bytes()
                except FileNotFoundError:
                    continue
                self.reads += 1
                flags = self.classify(at, data)
                if self.torn_flag is not None:
                    if self.torn_flag in flags and len(held) < _HELD_READS:
                        held.append((at, data, flags))
                        time.sleep(0)
                        continue
                    for h_at, h_data, h_flags in held:
                        if (self.torn_flag in h_flags and last_good is not None
                                and torn(h_data, last_good, data)):  # fmt: skip
                            h_flags = (h_flags - {self.torn_flag}) | {"torn"}
                        self._record(h_at, h_data, h_flags, open_since)
                    held.clear()
                    if self.torn_flag not in flags:
                        last_good = data
                self._record(at, data, flags, open_since)
                time.sleep(0)  # let the other threads in between reads
            for h_at, h_data, h_flags in held:
                self._record(h_at, h_data, h_flags, open_since)
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self._error = exc

    def _record(self, at: float, data: bytes, flags: set[str],
                open_since: dict[str, float]) -> None:  # fmt: skip
        for flag in flags:
            self.counts[flag] = self.counts.get(flag, 0) + 1
            seen = self.examples.setdefault(flag, [])
            if len(seen) < 3:
                seen.append(data[:2048].decode("utf-8", "backslashreplace"))
            if flag not in open_since:
                open_since[flag] = at
                self.windows[flag] = self.windows.get(flag, 0) + 1
        for flag in list(open_since):
            if flag not in flags:
                since = open_since.pop(flag)
                took = at - since
                self.longest[flag] = max(self.longest.get(flag, 0.0), took)
                if took > self.long_window:
                    self.long.append((flag, since, took))

    def stop(self) -> Poller:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._error is not None:
            raise AssertionError(f"poller failed: {self._error!r}") from self._error
        return self

    def figures(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "flagged_reads": dict(self.counts),
            "windows": dict(self.windows),
            "longest_window_ms": {k: round(v * 1000, 3) for k, v in self.longest.items()},
            "examples": {k: v for k, v in self.examples.items() if k in ("malformed", "torn")},
        }


class SocketProxy:
    """A unix-socket proxy in front of the engine's API socket that can be taken down and
    brought back at will: an outage of the API as the daemon sees it, while the engine and
    its containers (shared with other test runs) keep running."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def up(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening, remove the socket and cut every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process used so far (utime + stime, all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# The AddressWatch's poller, run as a process of its own: a thread of the test's would share
# the interpreter with the test's docker calls and see gaps of 100 ms and more between reads
# on a loaded machine.
_WATCH = r"""
import json, sys, time
path, interval, forbidden = sys.argv[1], float(sys.argv[2]), set(sys.argv[3:])
BEGIN, END = b"# BEGIN hostsyncd", b"# END hostsyncd"
reads = bad = windows = 0
longest, since, seen, gaps = 0.0, None, set(), []
last = time.monotonic()
sys.stdout.write("ready\n")
sys.stdout.flush()
import select
while not select.select([sys.stdin], [], [], 0)[0]:
    at = time.monotonic()
    gaps.append(at - last)
    last = at
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    reads += 1
    ips, inside = set(), False
    for ln in data.split(b"\n"):
        if ln.startswith(BEGIN):
            inside = True
        elif ln.startswith(END):
            inside = False
        elif inside:
            ips.add(ln.split(b"\t")[0].strip().decode("ascii", "replace"))
    hit = ips & forbidden
    if hit:
        bad += 1
        seen |= hit
        if since is None:
            since, windows = at, windows + 1
    elif since is not None:
        longest, since = max(longest, at - since), None
    time.sleep(interval)
if since is not None:
    longest = max(longest, time.monotonic() - since)
gaps.sort()
print(json.dumps({"reads": reads, "bad_reads": bad, "windows": windows,
                  "longest_readable_ms": round(longest * 1000, 3), "forged_seen": sorted(seen),
                  "gap_p99_ms": round(gaps[int(0.99 * (len(gaps) - 1))] * 1000, 3),
                  "gap_max_ms": round(gaps[-1] * 1000, 3),
                  "gaps_over_5ms": sum(g > 0.005 for g in gaps)}))
"""


class AddressWatch:
    """Reads a dependent's hosts file every `interval` seconds (the trust rule asks for 5 ms
    or less), in a process of its own, and measures how long any of `forbidden` was
    readable in its block: from the first read that showed it to the first read that no
    longer did (or to stop()). figures() also gives the gaps between reads, so a test can
    tell a watch that was starved of CPU from a clean one."""

    def __init__(self, path: Path, forbidden: Iterable[str], interval: float = 0.002) -> None:
        self.path = path
        self.forbidden = sorted(set(forbidden))
        self.interval = interval
        self._proc: subprocess.Popen[str] | None = None
        self._figures: dict[str, Any] = {}

    def start(self) -> AddressWatch:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WATCH, str(self.path), str(self.interval),
             *self.forbidden],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.nice(-5),  # late reads would blind it on a busy machine
        )  # fmt: skip
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise AssertionError("the address watch did not start")
        return self

    def stop(self) -> AddressWatch:
        if self._proc is None or self._figures:
            return self
        out, _ = self._proc.communicate("stop\n", timeout=30)
        if self._proc.returncode != 0 or not out.strip():
            raise AssertionError(f"the address watch failed (exit {self._proc.returncode})")
        self._figures = json.loads(out.strip().splitlines()[-1])
        return self

    @property
    def bad_reads(self) -> int:
        return int(self.figures()["bad_reads"])

    def figures(self) -> dict[str, Any]:
        if not self._figures:
            raise AssertionError("figures() before stop()")
        return dict(self._figures)

def state_of(daemon: Any) -> tuple[dict[str, Any], int]:
    """(the state file the `daemon` fixture's daemons write, its size in bytes)."""
    raw = (daemon.tmp / "state.json").read_bytes()
    return json.loads(raw), len(raw)
