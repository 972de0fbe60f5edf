"""sd_notify(3), spoken directly over the datagram socket systemd gives in NOTIFY_SOCKET.

Why hand-written, and not systemd-python's `systemd.daemon.notify`: systemd-python is the
optional `journald` extra (a C extension built against libsystemd), and the daemon must
start, report READY=1 and ping the watchdog without it, in a venv or a container without
libsystemd headers. The protocol is one datagram of `KEY=value` lines, the socket may be an
abstract one (`@...`), and this keeps the socket open once instead of per call. About 60
lines, against a dependency the daemon could not do without.

Imports: nothing.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Silent when not started by systemd (no NOTIFY_SOCKET)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = _watchdog_interval(env)
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            return False  # systemd gone or socket full: nothing a daemon can do about it
        return True

    def ready(self) -> None:
        self.send("READY=1")

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    return value if value.startswith("/") else None


def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), if the watchdog is on for us."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000
