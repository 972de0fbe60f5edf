"""Notices when a hosts file hostsyncd cares about is written by someone.

One inotify watch per file, limited to writes: a watch on the whole containers directory
would also see every log line the engine writes and every reader opening a file. The
callbacks run on the inotify thread and only hand the write on: a stopped target's file to
the start fast path (a trigger to ask the engine), any other to the loop as drift. Nothing
here reads a file. Inotify can lose events (queue overflow), so that is reported too, and
the periodic resync stays the safety net.

Imports: _inotify. Nothing of the core or the other edges: what a write means is the
daemon's business.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hostsyncd._inotify import IN_CLOSE_WRITE, IN_IGNORED, IN_MODIFY, Inotify

_MASK = IN_MODIFY | IN_CLOSE_WRITE


@dataclass(frozen=True, slots=True)
class Drift:
    """A hosts file hostsyncd watches was written by someone.

    `closed`: the writer closed the file. A write without a close may be one piece of
    several (a shell redirect, stdio buffers): acting on it would put our block in the
    middle of someone else's write.
    """

    container_id: str
    closed: bool = True


class HostsWatcher:
    def __init__(
        self,
        path_of: Callable[[str], Path],
        on_change: Callable[[str, bool], None],
        on_overflow: Callable[[], None] = lambda: None,
    ) -> None:
        """on_change(container_id, closed): closed is True when the writer closed the file
        (it is done), False for a write that may be one piece of several."""
        self._path_of = path_of
        self._on_change = on_change
        self._on_overflow = on_overflow
        self._overflowed = False
        self._inotify = Inotify(self._event, self._overflow)
        self._watches: dict[str, int] = {}  # container id -> watch descriptor
        self._owners: dict[int, str] = {}  # and back
        self._lock = threading.Lock()

    def start(self) -> None:
        self._inotify.start()

    def stop(self) -> None:
        self._inotify.stop()

    def watch_only(self, container_ids: Iterable[str]) -> None:
        """Watch exactly these containers' files; those not there yet are tried next time."""
        wanted = set(container_ids)
        with self._lock:
            stale = [self._watches.pop(cid) for cid in self._watches.keys() - wanted]
            for wd in stale:
                self._owners.pop(wd, None)
            missing = wanted - self._watches.keys()
        for wd in stale:
            # The file, and with it the watch, may already be gone.
            with contextlib.suppress(OSError):
                self._inotify.remove(wd)
        for cid in missing:
            try:
                wd = self._inotify.add(os.fsencode(self._path_of(cid)), _MASK)
            except OSError:
                continue
            with self._lock:
                self._watches[cid] = wd
                self._owners[wd] = cid

    def _event(self, wd: int, mask: int) -> None:
        with self._lock:
            cid = self._owners.get(wd)
            if cid is not None and mask & IN_IGNORED:
                # The file went (its container was removed), and the kernel dropped the watch.
                del self._owners[wd]
                self._watches.pop(cid, None)
                return
        if cid is not None and mask & (IN_MODIFY | IN_CLOSE_WRITE):
            self._on_change(cid, bool(mask & IN_CLOSE_WRITE))

    def _overflow(self) -> None:
        # Report once per burst: the resync it asks for covers everything lost until then.
        with self._lock:
            if self._overflowed:
                return
            self._overflowed = True
        self._on_overflow()

    def overflow_handled(self) -> None:
        """The resync the last overflow asked for has run; report the next one."""
        with self._lock:
            self._overflowed = False
