"""Notices when a hosts file hostsyncd cares about is written by someone.

One inotify watch per file, limited to writes: a watch on the whole containers directory
would also see every log line the engine writes and every reader opening a file. The
callbacks run on watchdog's inotify thread and only hand the write on: a stopped target's
file to the start fast path (a trigger to ask the engine), any other to the loop as
drift. Nothing here reads a file. Inotify can lose events (queue
overflow), so that is reported too, and the periodic resync stays the safety net.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    WatchDescriptor,
)

_MASK = InotifyConstants.IN_MODIFY | InotifyConstants.IN_CLOSE_WRITE
_CALLBACK = CallbackId(0)


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
        self._inotify = InotifyFD()
        self._watches: dict[str, WatchDescriptor] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._inotify.start()

    def stop(self) -> None:
        self._inotify.stop()
        self._inotify.join(timeout=2)

    def watch_only(self, container_ids: Iterable[str]) -> None:
        """Watch exactly these containers' files; those not there yet are tried next time."""
        wanted = set(container_ids)
        with self._lock:
            stale = [(cid, self._watches.pop(cid)) for cid in self._watches.keys() - wanted]
            missing = wanted - self._watches.keys()
        for _, wd in stale:
            # The file, and with it the watch, may already be gone.
            with contextlib.suppress(OSError, KeyError):
                self._inotify.remove_callbacks([(wd, _CALLBACK)])
        for cid in missing:
            try:
                wd = self._inotify.add_callback(
                    os.fsencode(self._path_of(cid)), _MASK, _Callback(self, cid), _CALLBACK
                )
            except OSError:
                continue
            with self._lock:
                self._watches[cid] = wd

    def _overflow(self) -> None:
        # watchdog calls every callback on one overflow: report it once per burst.
        with self._lock:
            if self._overflowed:
                return
            self._overflowed = True
        self._on_overflow()

    def overflow_handled(self) -> None:
        """The resync the last overflow asked for has run; report the next one."""
        with self._lock:
            self._overflowed = False

    def _gone(self, container_id: str, wd: WatchDescriptor) -> None:
        with self._lock:
            if self._watches.get(container_id) == wd:
                del self._watches[container_id]


class _Callback:
    def __init__(self, watcher: HostsWatcher, container_id: str) -> None:
        self.watcher = watcher
        self.container_id = container_id

    def on_event(self, event: InotifyEvent) -> None:
        self.watcher._on_change(self.container_id, event.is_close_write)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        self.watcher._gone(self.container_id, wd)

    def on_queue_overflow(self) -> None:
        self.watcher._overflow()

    def on_events_lost(self) -> None:
        """Called after every callback's on_queue_overflow: already reported there."""
