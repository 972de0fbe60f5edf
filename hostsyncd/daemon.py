"""Wiring: the event thread, the file watcher, signals, and the loop that decides *when*
to reconcile. All the deciding of *what* lives in the reconciler and the core."""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hostsyncd.config import Config, ConfigError
from hostsyncd.engine import (
    Connected,
    Disconnected,
    Engine,
    EngineEvent,
    EngineUnavailable,
    EventReader,
)
from hostsyncd.logging import get_logger
from hostsyncd.reconcile import Drift, Reconciler
from hostsyncd.watcher import HostsWatcher
from hostsyncd.writer import HostsWriter


class Signal(Enum):
    STOP = "stop"
    RELOAD = "reload"
    RESYNC = "resync"  # file events were lost


@dataclass(slots=True)
class EngineLink:
    connected: bool = False
    version: str = ""
    since: float = 0.0  # wall time of the last change
    reason: str = ""


class Daemon:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.log = get_logger()
        self.hints: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.engine_link = EngineLink()
        self.reconciler = self._reconciler(config)
        self.synced_once = threading.Event()
        self._next_resync = 0.0

    def _reconciler(self, config: Config) -> Reconciler:
        writer = HostsWriter(config.docker.containers_root, config.sync.max_hosts_bytes)
        engine = Engine(config.docker.url, config.docker.api_timeout)
        return Reconciler(config, engine, writer, self.log)

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        reader = EventReader(self.config.docker.url, self.hints.put, self.config.docker.api_timeout)
        watcher = HostsWatcher(
            self.reconciler.writer.path,
            on_change=lambda cid: self.hints.put(Drift(cid)),
            on_overflow=lambda: self.hints.put(Signal.RESYNC),
        )
        self.log.info("hostsyncd starting", engine=self.config.docker.url,
                      containers_root=str(self.config.docker.containers_root))
        watcher.start()
        reader.start()
        try:
            self._loop(watcher)
        finally:
            reader.stop()
            watcher.stop()
            self.reconciler.engine.close()
            self.log.info("hostsyncd stopped")
        return 0

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.hints.put(Signal.STOP))
        signal.signal(signal.SIGINT, lambda *_: self.hints.put(Signal.STOP))
        signal.signal(signal.SIGHUP, lambda *_: self.hints.put(Signal.RELOAD))

    # -- the loop -----------------------------------------------------------------------

    def _loop(self, watcher: HostsWatcher) -> None:
        while True:
            batch = self._next_batch()
            if Signal.STOP in batch:
                return
            try:
                self._handle(batch)
            except EngineUnavailable as exc:
                # The event thread notices too and reconnects; its Connected brings a resync.
                self.reconciler.problems.add("engine", "call", f"engine call failed: {exc}")
            watcher.watch_only(self.reconciler.watched)

    def _next_batch(self) -> list[object]:
        """Block until a hint or a timer is due, then take everything already queued, so a
        burst of events costs one pass."""
        now = time.monotonic()
        due = self._next_resync
        if self.reconciler.retry_due is not None:
            due = min(due, self.reconciler.retry_due)
        batch: list[object] = []
        with contextlib.suppress(queue.Empty):
            batch.append(self.hints.get(timeout=max(0.0, due - now)))
        while True:
            try:
                batch.append(self.hints.get_nowait())
            except queue.Empty:
                return batch

    def _handle(self, batch: list[object]) -> None:
        resync = time.monotonic() >= self._next_resync
        events: list[EngineEvent] = []
        drifted: list[str] = []
        for hint in batch:
            if isinstance(hint, EngineEvent):
                events.append(hint)
            elif isinstance(hint, Drift):
                drifted.append(hint.container_id)
            elif isinstance(hint, Connected):
                self._engine_up(hint)
                resync = True
            elif isinstance(hint, Disconnected):
                self._engine_down(hint)
            elif hint is Signal.RELOAD:
                self._reload()
                resync = True
            elif hint is Signal.RESYNC:
                resync = True
        if not self.engine_link.connected:
            resync = False  # nothing to list; the next Connected resyncs
        # Events before file writes: a container the events say is running may write its
        # own hosts file, and that must not read as Docker starting it.
        need_list = self.reconciler.apply_events(events) if events else False
        self.reconciler.drifted(drifted)
        if resync:
            self._full_resync()
        else:
            if need_list and self.engine_link.connected:
                self.reconciler.refresh()
            self.reconciler.reconcile()

    def _full_resync(self) -> None:
        self.reconciler.refresh()
        result = self.reconciler.reconcile(verify_all=True)
        self._next_resync = time.monotonic() + self.config.sync.resync_interval
        self.reconciler.problems.clear("engine", "call")
        self.log.debug("full resync", dependents=len(self.reconciler.plans),
                       written=result.written, failed=len(result.failed))
        self.synced_once.set()

    def _engine_up(self, hint: Connected) -> None:
        self.engine_link = EngineLink(True, hint.engine_version, time.time())
        self.log.info("engine connected", engine=self.config.docker.url,
                      version=hint.engine_version)

    def _engine_down(self, hint: Disconnected) -> None:
        if self.engine_link.connected or not self.engine_link.since:
            self.log.warning("engine unreachable, retrying", engine=self.config.docker.url,
                             reason=hint.reason)
            self.engine_link = EngineLink(False, "", time.time(), hint.reason)

    def _reload(self) -> None:
        if self.reload_config is None:
            return
        try:
            new = self.reload_config()
        except ConfigError as exc:
            self.log.error("config reload failed; keeping the running config", error=str(exc))
            return
        if new.docker != self.config.docker:
            self.log.warning("[docker] changes take effect after a restart")
            new = new.model_copy(update={"docker": self.config.docker})
        self.config = new
        self.reconciler.config = new
        self.reconciler.writer.max_bytes = new.sync.max_hosts_bytes
        self.log.info("config reloaded")


def run_once(config: Config) -> tuple[int, Any]:
    """`hostsyncd sync`: one full reconcile. Returns (writes, failed container ids)."""
    log = get_logger()
    engine = Engine(config.docker.url, config.docker.api_timeout)
    writer = HostsWriter(config.docker.containers_root, config.sync.max_hosts_bytes)
    reconciler = Reconciler(config, engine, writer, log)
    try:
        reconciler.refresh()
        result = reconciler.reconcile(verify_all=True)
    finally:
        engine.close()
    return result.written, result.failed
