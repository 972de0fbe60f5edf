"""Notices when something other than hostsyncd rewrites a dependent's hosts file.

One inotify watch per dependent's hosts file, limited to writes: a watch on the whole
containers directory would also see every log line the engine writes and every reader
opening a file. Inotify can lose events, so the periodic resync stays the safety net.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileClosedEvent, FileModifiedEvent, FileSystemEvent
from watchdog.events import FileSystemEventHandler as _Handler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch


class _Forward(_Handler):
    def __init__(self, container_id: str, on_change: Callable[[str], None]) -> None:
        self.container_id = container_id
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.on_change(self.container_id)


class HostsWatcher:
    def __init__(self, path_of: Callable[[str], Path], on_change: Callable[[str], None]) -> None:
        self._path_of = path_of
        self._on_change = on_change
        self._observer = Observer()
        self._watches: dict[str, ObservedWatch] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)

    def watch_only(self, container_ids: Iterable[str]) -> None:
        """Watch exactly these dependents' files; those not there yet are tried next time."""
        wanted = set(container_ids)
        with self._lock:
            for cid in list(self._watches.keys() - wanted):
                self._unschedule(cid)
            for cid in wanted - self._watches.keys():
                try:
                    self._watches[cid] = self._observer.schedule(
                        _Forward(cid, self._on_change),
                        str(self._path_of(cid)),
                        event_filter=[FileModifiedEvent, FileClosedEvent],
                    )
                except OSError:
                    continue

    def _unschedule(self, container_id: str) -> None:
        watch = self._watches.pop(container_id)
        # The file, and with it the watch, may already be gone.
        with contextlib.suppress(KeyError, OSError):
            self._observer.unschedule(watch)

    @property
    def watched(self) -> int:
        return len(self._watches)
