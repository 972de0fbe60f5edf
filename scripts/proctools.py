"""Process helpers shared by the stdlib-only test harnesses (privengine.py, etcdcluster.py).

Both start daemons in sessions of their own that outlive the Python process, so they find
them again by pid file and command line, and must tell a live process from a zombie.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
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


def ping_socket(path: Path, timeout: float = 2.0) -> bool:
    """True when an engine (dockerd, or Podman's compat service) answers GET /_ping with
    200 OK on the unix socket at path."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[1] == b"200" and body.strip() == b"OK"


def read_pid(pidfile: Path) -> int | None:
    """The pid a pid file names, or None if it is missing or holds no number."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
