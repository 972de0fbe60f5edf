"""Wiring: the event thread, the file watcher, signals, sd_notify, and the loop that decides
*when* to reconcile. All the deciding of *what* lives in the reconciler and the core.

Imports: _notify, cluster, config, engine, fastpath, log, metrics, problems, reconcile,
state, watcher, writer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hostsyncd import log as hlog
from hostsyncd import state
from hostsyncd._notify import Notifier
from hostsyncd.cluster import Cluster, read_remote
from hostsyncd.config import Config, ConfigError
from hostsyncd.engine import (
    Connected,
    Disconnected,
    Engine,
    EngineEvent,
    EngineUnavailable,
    EventReader,
    NetworkProbe,
)
from hostsyncd.fastpath import EarlyStart, ForgedEntry, StartFastPath
from hostsyncd.metrics import Readings, TextfileWriter, link_states
from hostsyncd.problems import ProblemLog
from hostsyncd.reconcile import HostsPaths, Reconciler, ToList
from hostsyncd.watcher import Drift, HostsWatcher
from hostsyncd.writer import HostsWriter

# The state file and STATUS= follow changes at most this often: they are for people.
STATE_INTERVAL = 1.0
# An unexpected error is logged with its traceback at most this often per kind.
ERROR_REPEAT_INTERVAL = 60.0
# How many kinds of unexpected error are remembered for that (their text may name
# containers, so the memory of them is bounded too).
ERROR_KINDS = 64
# Seconds the metrics textfile's last write may take at a stop before the daemon exits
# without it (a hung disk must not hold up the stop; systemd would kill us anyway).
METRICS_STOP_TIMEOUT = 2.0


class Signal(Enum):
    STOP = "stop"
    RELOAD = "reload"
    RESYNC = "resync"  # file events were lost
    CLUSTER = "cluster"  # remote records or the cluster's health changed


# Everything that reaches the loop, from every thread, is one of these: the engine's
# events (a connect with its endpoint) and its connection; writes to hosts files; the start
# fast path's early writes and suspected forgeries; signals; and a thread's crash.
Hint = (EngineEvent | Connected | Disconnected | Drift | EarlyStart | ForgedEntry | Signal
        | Exception)


@dataclass(slots=True)
class EngineLink:
    connected: bool = False
    version: str = ""
    since: float = 0.0  # wall time of the last change
    reason: str = ""


class Daemon:
    def __init__(
        self,
        config: Config,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.reload_config = reload_config
        self.notifier = notifier or Notifier()
        self.log = hlog.get_logger()
        self.hints: queue.SimpleQueue[Hint] = queue.SimpleQueue()
        self.engine_link = EngineLink()
        self.problems = ProblemLog(self.log)
        self.reconciler, self.engine, self.writer = build_reconciler(config, self.log,
                                                                     self.problems)
        self.started = time.time()
        self.ready = False
        self.resyncs = 0
        self._next_resync = 0.0
        self._next_ping = 0.0
        self._next_state = 0.0
        self._state_dirty = True
        self._errors: dict[str, tuple[float, int]] = {}
        self._watcher: HostsWatcher | None = None
        self.fastpath: StartFastPath | None = None
        self.cluster: Cluster | None = None
        self._remote_version = -1  # the version of the remote records last taken
        self.metrics: TextfileWriter | None = None
        self._next_metrics = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        reader = EventReader(self.config.docker.url, self.hints.put, self.config.docker.api_timeout)
        watcher = HostsWatcher(
            self.writer.path,
            on_change=self._file_written,
            on_overflow=lambda: self.hints.put(Signal.RESYNC),
        )
        self.log.info("hostsyncd starting", engine=self.config.docker.url,
                      containers_root=str(self.config.docker.containers_root))
        # The fast path asks the engine on a thread of its own, with a connection of its own.
        probe = NetworkProbe(self.config.docker.url, min(self.config.docker.api_timeout, 2.0))
        self.fastpath = StartFastPath(self.writer, probe.members, self.hints.put)
        self.reconciler.fastpath = self.fastpath
        self.reconciler.watch = watcher.watch_only
        self._watcher = watcher
        self._load_kept()
        if self.config.cluster.enabled:
            self._start_cluster()
        if self.config.metrics.textfile:
            self.metrics = TextfileWriter(Path(self.config.metrics.textfile))
            self.metrics.start()
        self.fastpath.start()
        watcher.start()
        reader.start()
        try:
            self._loop()
        finally:
            self.notifier.stopping()
            if self.metrics is not None:
                # Once more at the stop, so the file holds this run's final counts.
                self.metrics.stop(self.readings(), METRICS_STOP_TIMEOUT)
            reader.stop()
            watcher.stop()
            self.fastpath.stop()
            probe.close()
            if self.cluster is not None:
                self.cluster.stop()
            self.engine.close()
            self.log.info("hostsyncd stopped")
        return 0

    def _file_written(self, container_id: str, closed: bool) -> None:
        """On the watcher's thread: a stopped target's file is the fast path's trigger;
        any other is a dependent's file someone wrote."""
        assert self.fastpath is not None
        if not self.fastpath.trigger(container_id, closed):
            self.hints.put(Drift(container_id, closed))

    def _load_kept(self) -> None:
        """Keep mode starts from what the last daemon kept: the engine's word, in our own
        state file (never from the hosts files, which the containers write)."""
        if self.config.links.on_target_stop != "keep":
            return
        with contextlib.suppress(OSError, ValueError):
            self.reconciler.kept = state.kept_from(state.read(self.config.daemon.state_file))

    def _start_cluster(self) -> None:
        cfg = self.config.cluster
        self.cluster = Cluster(cfg, lambda: self.hints.put(Signal.CLUSTER), self.log)
        self._remote_version = -1  # a new cluster's versions say nothing about the last's
        self.reconciler.publisher = self.cluster.publish_from
        self.reconciler.take_remote(cfg.node, ())
        self.log.info("cluster enabled", node=cfg.node, endpoints=cfg.endpoints,
                      prefix=cfg.prefix)
        self.cluster.start()
        # The first sync should already know the other nodes' records: without them it
        # would strip remote lines that are still right. etcd being away only delays it.
        self.cluster.wait_loaded(cfg.timeout)
        self._cluster_changed()

    def _cluster_changed(self) -> bool:
        """Take the cluster's records; True if they changed what links resolve to (a change
        of health alone only needs the state file rewritten)."""
        assert self.cluster is not None
        self.problems.set("cluster/records", self.cluster.rejected())
        remote, changed = self.cluster.remote_records(since=self._remote_version)
        self._remote_version = remote.version
        return self.reconciler.take_remote(self.config.cluster.node, remote,
                                           self.config.cluster.resolve_bare_names, changed)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.hints.put(Signal.STOP))
        signal.signal(signal.SIGINT, lambda *_: self.hints.put(Signal.STOP))
        signal.signal(signal.SIGHUP, lambda *_: self.hints.put(Signal.RELOAD))

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if Signal.STOP in batch:
                self.log.info("stopping", reason="signal")
                return
            try:
                if batch or self._work_due():
                    self._handle(batch)
            except EngineUnavailable as exc:
                # The event thread notices too and reconnects; its Connected brings a resync.
                self.problems.add("engine", "call", f"engine call failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - the daemon serves everyone else on
                self._unexpected(exc)
            self._tick()

    def _work_due(self) -> bool:
        """On a timer wake-up with no hint: is a resync or a retry due? A watchdog ping or a
        state write alone must not cost a pass over every dependent."""
        now = time.monotonic()
        retry = self.reconciler.retry_due
        return now >= self._resync_due() or (retry is not None and now >= retry)

    def _resync_due(self) -> float:
        """When the next resync is due. Never while the engine is away: there is nothing to
        list, and a deadline that stays in the past would make the loop spin. The engine's
        return (Connected) brings a resync of its own."""
        return self._next_resync if self.engine_link.connected else float("inf")

    def _next_batch(self) -> list[Hint]:
        """Block until a hint or a timer is due, then take everything already queued, so a
        burst of events costs one pass."""
        due = min(self._resync_due(), self._next_ping if self.notifier.watchdog_interval
                  else float("inf"))
        if self._state_dirty:
            due = min(due, self._next_state)
        if self.metrics is not None:
            due = min(due, self._next_metrics)
        if self.reconciler.retry_due is not None:
            due = min(due, self.reconciler.retry_due)
        batch: list[Hint] = []
        with contextlib.suppress(queue.Empty):
            timeout = None if due == float("inf") else max(0.0, due - time.monotonic())
            batch.append(self.hints.get(timeout=timeout))
        while True:
            try:
                batch.append(self.hints.get_nowait())
            except queue.Empty:
                return batch

    def _handle(self, batch: list[Hint]) -> None:
        """A pass when something about the containers may have changed; otherwise only a
        repair of the files that are due (someone wrote them, or a retry)."""
        resync = time.monotonic() >= self._next_resync
        events: list[EngineEvent] = []
        drifted: list[Drift] = []
        early: list[EarlyStart] = []
        forged: list[ForgedEntry] = []
        remote_changed = False
        for hint in batch:
            match hint:
                case EngineEvent():
                    events.append(hint)
                case Drift():
                    drifted.append(hint)
                case EarlyStart():
                    early.append(hint)
                case ForgedEntry():
                    forged.append(hint)
                case Connected():
                    self._engine_up(hint)
                    resync = True
                case Disconnected():
                    self._engine_down(hint)
                case Signal.RELOAD:
                    self._reload()
                    resync = True
                case Signal.RESYNC:
                    self.log.warning("file events were lost; resyncing")
                    resync = True
                case Signal.CLUSTER:
                    remote_changed = self._cluster_changed() or remote_changed
                case Exception():
                    self._unexpected(hint)
        if not self.engine_link.connected:
            resync = False  # nothing to list; the next Connected resyncs
        for started in early:
            self.reconciler.started(started)
        # Events before file writes: a container the events say is running may write its
        # own hosts file, and that must not read as Docker starting it.
        asked, first = self.reconciler.apply_events(events) if events else (ToList(), False)
        self.reconciler.drifted(drifted)
        # Propagation is timed from the oldest event of the batch (stats.py).
        since = min((event.received for event in events), default=None)
        if resync:
            self._full_resync(since)
        elif events or early or remote_changed:
            if asked and self.engine_link.connected:
                if first:
                    # A freed or a resolved address out first, then the list.
                    self.reconciler.reconcile(since=since)
                self.reconciler.refresh(asked)
            self.reconciler.reconcile(since=since)
        else:
            # File writes, a retry, or the cluster's health alone: no engine fact changed,
            # so the plans stand. Only the files that are due are looked at.
            self.reconciler.repair()
        for found in forged:
            self.reconciler.forged(found)
        self._state_dirty = True

    def _full_resync(self, since: float | None = None) -> None:
        wall, cpu, calls = time.perf_counter(), time.process_time(), self.engine.calls
        if self._watcher is not None:
            self._watcher.overflow_handled()  # this resync covers whatever was lost
        self.reconciler.refresh()
        result = self.reconciler.reconcile(verify_all=True, since=since)
        self._next_resync = time.monotonic() + self.config.sync.resync_interval
        self.problems.clear("engine", "call")
        self.resyncs += 1
        self.log.debug(
            "full resync",
            containers=self.reconciler.containers(),
            dependents=len(self.reconciler.plans),
            written=result.written,
            failed=len(result.failed),
            api_calls=self.engine.calls - calls,
            wall_ms=round((time.perf_counter() - wall) * 1000, 3),
            cpu_ms=round((time.process_time() - cpu) * 1000, 3),
        )
        if not self.ready:
            self._become_ready()

    def _become_ready(self) -> None:
        self.ready = True
        self._write_state()  # STATUS= before READY=1, so systemctl shows it at once
        self.notifier.ready()
        self.log.info("ready", dependents=len(self.reconciler.plans))

    # -- timers: watchdog pings, state ----------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        interval = self.notifier.watchdog_interval
        if interval and now >= self._next_ping:
            # Pinged from this loop, so a hung loop stops the pings and systemd acts.
            self.notifier.watchdog()
            self._next_ping = now + interval
        if self._state_dirty and now >= self._next_state:
            self._write_state()
        if self.metrics is not None and now >= self._next_metrics:
            self._publish_metrics(self.metrics)
            self._next_metrics = now + self.config.metrics.interval

    def _publish_metrics(self, metrics: TextfileWriter) -> None:
        """Hand the writer's thread the latest readings, and say (once) whether its last
        write failed: it retries on its own, with backoff."""
        if metrics.failure is not None:
            self.problems.add("metrics", "write", metrics.failure, level="error",
                              path=str(metrics.path))
        else:
            self.problems.clear("metrics", "write", path=str(metrics.path))
        metrics.publish(self.readings())

    def readings(self) -> Readings:
        """What the metrics say now: a copy of the counts, and the state they describe."""
        rec = self.reconciler
        return Readings(
            stats=rec.stats.copy(),
            dependents=len(rec.plans),
            links=link_states(rec.plans.values()),
            problems=self.problems.counts(),
            engine_up=self.engine_link.connected,
            cluster_up=None if self.cluster is None else self.cluster.connected,
            started=self.started,
        )

    def _write_state(self) -> None:
        self._state_dirty = False
        self._next_state = time.monotonic() + STATE_INTERVAL
        data = self.snapshot_state()
        self.notifier.status(state.summary_line(data))
        try:
            state.write_atomically(self.config.daemon.state_file, data)
        except OSError as exc:
            self.problems.add("daemon", "state", f"cannot write state file: {exc}")
        else:
            self.problems.clear("daemon", "state")

    def snapshot_state(self) -> dict[str, Any]:
        rec = self.reconciler
        plans = rec.plans
        links = sum(len(p.links) for p in plans.values())
        unresolved = sum(1 for p in plans.values() for link in p.links if link.problem)
        shared = state.sharers(list(plans.values()))
        return {
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "ready": self.ready,
            "engine": {
                "url": self.config.docker.url,
                "connected": self.engine_link.connected,
                "version": self.engine_link.version,
                "since": self.engine_link.since,
                "reason": self.engine_link.reason,
            },
            "counts": {
                "dependents": len(plans),
                "links": links,
                "unresolved": unresolved,
                "invalid_specs": sum(len(p.errors) for p in plans.values()),
                "writes": rec.writes,
                "write_errors": rec.write_errors,
                "watched_files": len(rec.watched),
                "engine_api_calls": self.engine.calls,
                "full_resyncs": self.resyncs,
            },
            "dependents": [
                state.dependent_view(plan, rec.last_write.get(plan.hosts_file), shared[cid])
                for cid, plan in sorted(plans.items(), key=lambda kv: kv[1].dependent.name)
            ],
            "cluster": self.cluster.state() if self.cluster is not None else {"enabled": False},
            "recent_errors": list(self.problems.recent),
            "kept": state.kept_view(rec.kept),
        }

    # -- engine connection ----------------------------------------------------------------

    def _engine_up(self, hint: Connected) -> None:
        self.engine_link = EngineLink(True, hint.engine_version, time.time())
        self.reconciler.forget_events()
        self.log.info("engine connected", engine=self.config.docker.url,
                      version=hint.engine_version)
        # The engine at the URL may be another one now (Docker replaced by Podman): the
        # reconciler's connection asks again at its next list, which this resync makes.
        self.engine.close()
        if self._watcher is not None:
            self._watch_files(self._watcher, not hint.podman)

    def _watch_files(self, watcher: HostsWatcher, on: bool) -> None:
        """Inotify (and with it the start fast path, which it triggers) on Docker only.
        Podman replaces a container's hosts file with a new inode at every start (measured),
        so a watch on the file would go deaf at the first restart; and the fast path reads
        Docker's rebuild of a stopped target's file as the start, which Podman's order of
        work does not promise. Events and the periodic resync cover Podman."""
        if on:
            self.reconciler.watch = watcher.watch_only
        elif self.reconciler.watch is not _watch_nothing:
            self.log.info("podman: hosts files are not watched, and the start fast path is "
                          "off (README, Podman)")
            self.reconciler.watch = _watch_nothing
            watcher.watch_only(())

    def _engine_down(self, hint: Disconnected) -> None:
        if self.engine_link.connected or not self.engine_link.since:
            self.log.warning("engine unreachable, retrying", engine=self.config.docker.url,
                             reason=hint.reason)
            self.engine_link = EngineLink(False, "", time.time(), hint.reason)
            self._next_state = 0.0
        if not self.ready:
            # Nothing can be synced without an engine, and waiting for one would make
            # systemd kill the service at its start timeout: be ready, and say why.
            self._become_ready()

    # -- reload, errors -------------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_config is None:
            return
        self.notifier.reloading()
        try:
            new = self.reload_config()
        except ConfigError as exc:
            self.log.error("config reload failed; keeping the running config", error=str(exc))
        else:
            for section in ("docker", "cluster", "metrics"):
                if getattr(new, section) != getattr(self.config, section):
                    self.log.warning(f"[{section}] changes take effect after a restart")
                    new = new.model_copy(update={section: getattr(self.config, section)})
            self.config = new
            self.writer.max_bytes = new.sync.max_hosts_bytes
            self.reconciler.reconfigure(new)
            # Every logger the daemon handed out follows this (structlog's lazy proxies,
            # not cached: log.py), so none is handed out again.
            hlog.configure(new.log.level, new.log.output)
            self.log.info("config reloaded")
        self.notifier.ready()

    def _unexpected(self, exc: Exception) -> None:
        """Log a bug once with its traceback, then at most once a minute with a count."""
        key = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        last, suppressed = self._errors.get(key, (float("-inf"), 0))
        if now - last < ERROR_REPEAT_INTERVAL:
            self._errors[key] = (last, suppressed + 1)
            return
        self._errors.pop(key, None)
        if len(self._errors) >= ERROR_KINDS:
            del self._errors[next(iter(self._errors))]  # the oldest
        self._errors[key] = (now, 0)
        self.log.error("unexpected error; carrying on", error=key, repeated=suppressed,
                       exc_info=exc)
        self.problems.note_error(key)


def _watch_nothing(_: set[str]) -> None:
    return None


def build_reconciler(config: Config, log: Any, problems: ProblemLog | None = None
                     ) -> tuple[Reconciler, Engine, HostsWriter]:
    """The reconciler with the two edges it drives, which the caller owns and closes."""
    engine = Engine(config.docker.url, config.docker.api_timeout)
    writer = HostsWriter(config.docker.containers_root, config.sync.max_hosts_bytes,
                         roots=config.docker.write_roots)
    paths = HostsPaths(engine, config.docker.containers_root)
    writer.locate = paths.locate
    reconciler = Reconciler(config, engine, writer, log, problems=problems, paths=paths)
    return reconciler, engine, writer


def run_once(config: Config) -> tuple[int, list[str]]:
    """`hostsyncd sync`: one full reconcile. Returns (writes, failed container ids)."""
    reconciler, engine, _ = build_reconciler(config, hlog.get_logger())
    if config.cluster.enabled:
        # Raises when etcd is away: a sync without the remote records would strip lines.
        reconciler.take_remote(config.cluster.node, read_remote(config.cluster),
                               config.cluster.resolve_bare_names)
    try:
        reconciler.refresh()
        result = reconciler.reconcile(verify_all=True)
    finally:
        engine.close()
    return result.written, result.failed
