"""inotify(7) on single files, through libc with ctypes, read on a thread of its own.

Why hand-written, and not watchdog: watchdog's public API (`Observer.schedule`) watches
directories. A container's directory also holds its JSON log, which the engine appends to
for every line the container prints, so a directory watch would wake the daemon once per
log line: a container's output amplified into our CPU. hostsyncd needs one watch per file,
on writes only, with a write that closed the file told apart from one that may be one
piece of several. watchdog does that only in its internal `inotify_c` module, whose
callback protocol changed in a minor release (7.1 added `on_events_lost`, and its thread
died at the first overflow for every caller without it). The kernel interface is three
calls and one struct, so it is here, where nothing can change under it.

Imports: nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct
import threading
from collections.abc import Callable

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
# A watched path that is a symlink is not followed: the file itself or nothing.
IN_DONT_FOLLOW = 0x02000000

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_READ_BYTES = 64 * 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class Inotify:
    """One inotify instance. `on_event(wd, mask)` runs on the reading thread for every
    event of a watch (IN_IGNORED: the watch is gone, its file removed or the watch taken
    off); `on_overflow()` when the kernel's queue overflowed and events were lost."""

    def __init__(self, on_event: Callable[[int, int], None],
                 on_overflow: Callable[[], None]) -> None:
        self._on_event = on_event
        self._on_overflow = on_overflow
        self._fd = _check(_libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK), "inotify_init1")
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)

    def add(self, path: bytes, mask: int) -> int:
        """Watch one file; its watch descriptor. OSError if it is not there."""
        return _check(_libc.inotify_add_watch(self._fd, path, mask | IN_DONT_FOLLOW),
                      "inotify_add_watch")

    def remove(self, wd: int) -> None:
        """Stop watching; OSError if the watch is already gone (its file removed)."""
        _check(_libc.inotify_rm_watch(self._fd, wd), "inotify_rm_watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                data = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                continue
            self.dispatch(data)

    def dispatch(self, data: bytes) -> None:
        """Hand on every event in one read's bytes (whole events: the kernel never splits
        one across reads)."""
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                self._on_overflow()
            elif wd >= 0:
                self._on_event(wd, mask)
