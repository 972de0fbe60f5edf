"""Process helpers shared by the stdlib-only test harnesses (privengine.py, etcdcluster.py).

Both start daemons in sessions of their own that outlive the Python process, so they find
them again by pid file and command line, and must tell a live process from a zombie.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that nobody reaped yet) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    """True once the process is gone (reaped if it was our child); False after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        reap(pid)
        if not alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@contextlib.contextmanager
def locked(lockfile: Path) -> Iterator[None]:
    """Hold an exclusive flock on lockfile: one harness at a time starts or stops a daemon,
    whichever test run or benchmark asks."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with lockfile.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
