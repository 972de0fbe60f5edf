"""The only module that talks to etcd: publish this node's records, follow every node's.

etcd is reached through its v3 JSON gateway (`POST /v3/...` on the client port), which
etcd 3.4 serves out of the box; a request that fails on one member is tried on the next.
Two threads, so a slow watch never delays a lease keep-alive:

- the publisher holds one lease, keeps it alive, and makes this node's keys match what the
  daemon last asked for (level-triggered: after any failure it re-reads its own keys);
- the watcher reads every node's records with one range read, then follows a watch from
  that revision, and starts over with a range read after any break.

While etcd is away the last known records stay: a dependent keeps its remote lines, and
the cluster shows as degraded until both threads are back.

Imports: _etcd, config, core.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hostsyncd._etcd import (
    EtcdClient,
    EtcdError,
    PermissionDenied,
    WatchTooLarge,
    kv_key,
    unb64,
)
from hostsyncd.config import ClusterConfig
from hostsyncd.core.graph import RemoteIndex, Snapshot
from hostsyncd.core.links import is_docker_name
from hostsyncd.core.model import Container
from hostsyncd.core.persistent import PersistentMap
from hostsyncd.core.records import (
    RecordError,
    nodes_prefix,
    owner_key,
    parse_record,
    published,
    record_key,
)

MAX_BACKOFF = 5.0
# Rejected keys are kept (as a digest and a short message) up to this many; beyond it they
# are only counted. The first MAX_REJECTED_LISTED are reported one by one, the rest in one
# summary.
MAX_REJECTED_KEPT = 1000
MAX_REJECTED_LISTED = 20
# A clean shutdown gives the lease revoke at most this long: etcd being away must not hold
# up a stop, and the records expire with the lease anyway.
REVOKE_TIMEOUT = 2.0
# Changes of other nodes' records remembered by name, for the daemon to plan only the
# dependents that link to them; a daemon further behind than this plans everything.
MAX_CHANGES_KEPT = 4096


def read_remote(config: ClusterConfig) -> tuple[Container, ...]:
    """Every node's usable records, with one (paged) range read, for one-shot commands."""
    client = EtcdClient(config)
    view = RemoteView(config.prefix, config.node, config.max_records_per_node)
    try:
        for _, kvs in client.range_pages(nodes_prefix(config.prefix).encode()):
            for kv in kvs:
                view.put(kv)
    finally:
        client.close()
    return view.records()


_OWNER = re.compile(r"[^/]+/owner")


class RemoteView:
    """Other nodes' records as read from etcd, bounded: at most `cap` records per node,
    and rejected keys only as a digest and a short message (at most MAX_REJECTED_KEPT of
    them; beyond that, counted). Not thread-safe: the Cluster holds its lock around it."""

    def __init__(self, prefix: str, node: str, cap: int) -> None:
        self.prefix = prefix
        self.cap = cap
        self._nodes = nodes_prefix(prefix)
        self._own = f"{self._nodes}{node}/"
        self.remote: dict[str, Container] = {}
        # The same records indexed as a Snapshot looks them up, kept up to date here, so
        # a change does not cost indexing them all again (see index()).
        self.by_key: PersistentMap[tuple[str, str], Container] = PersistentMap()
        self.by_name: PersistentMap[str, list[Container]] = PersistentMap()
        # Each node's record names, sorted, for the state file: kept here too, so that
        # writing the state costs no sort of every record.
        self.names: dict[str, list[str]] = {}
        self.version = 0
        # The names changed by the last versions, oldest first, so the daemon can plan
        # only the dependents that link to them (see changed_since).
        self._changed: deque[tuple[int, str]] = deque(maxlen=MAX_CHANGES_KEPT)
        self.per_node: dict[str, int] = {}
        self.over_cap: dict[str, int] = {}  # node: records ignored over its cap
        self.rejected: dict[bytes, str] = {}  # digest of the key: why
        self.rejected_more = 0  # rejected keys beyond MAX_REJECTED_KEPT (not kept)

    def state(self) -> tuple[Any, ...]:
        return (self.remote, self.over_cap, self.rejected, self.rejected_more)

    def records(self) -> tuple[Container, ...]:
        return tuple(sorted(self.remote.values(), key=lambda c: (c.node, c.name)))

    def index(self) -> RemoteIndex:
        """The index as it is now, for the daemon's thread: the maps are persistent (a
        change makes new ones) and the lists are replaced, never changed in place, so
        handing them over costs no copy."""
        return RemoteIndex(self.version, self.by_key, self.by_name)

    def follow(self, before: RemoteView) -> None:
        """This view (read afresh) replaces `before`: its versions go on from before's,
        with no names to say what changed, so a reader of `before` plans everything."""
        self.version = before.version + 1
        self._changed.clear()

    def changed_since(self, version: int) -> frozenset[str] | None:
        """The names whose records changed after `version`; None if that is further back
        than the last MAX_CHANGES_KEPT changes (or ahead of this view: another view)."""
        if version > self.version:
            return None
        if version == self.version:
            return frozenset()
        if not self._changed or self._changed[0][0] > version + 1:
            return None  # forgotten, or a new view (its history starts after `version`)
        newer = itertools.takewhile(lambda change: change[0] > version, reversed(self._changed))
        return frozenset(name for _, name in newer)

    def _indexed(self, found: Container | None, gone: Container | None) -> None:
        self.version += 1
        self._changed.append((self.version, (found or gone).name))  # type: ignore[union-attr]
        if found is None and gone is not None:
            names = self.names[gone.node]
            del names[bisect.bisect_left(names, gone.name)]
            if not names:
                del self.names[gone.node]
        elif found is not None and gone is None:
            bisect.insort(self.names.setdefault(found.node, []), found.name)
        if gone is not None:
            self.by_key = self.by_key.without((gone.node, gone.name))
            left = [c for c in self.by_name.get(gone.name, ()) if c.node != gone.node]
            self.by_name = self.by_name.set(gone.name, left) if left \
                else self.by_name.without(gone.name)
        if found is not None:
            self.by_key = self.by_key.set((found.node, found.name), found)
            same = [c for c in self.by_name.get(found.name, ()) if c.node != found.node]
            self.by_name = self.by_name.set(found.name, sorted([*same, found], key=_by_node))

    def put(self, kv: dict[str, Any]) -> bool:
        """A key's new value (from a range read or a watch); True if the view changed."""
        key = kv_key(kv)
        if key.startswith(self._own) or _OWNER.fullmatch(key.removeprefix(self._nodes)):
            return False  # this node's own keys; any node's name claim (not a record)
        found = parse_record(self.prefix, key, unb64(kv.get("value", "")))
        if isinstance(found, RecordError):
            changed = self._drop(key)
            digest = _digest(key)
            message = str(found)
            if digest in self.rejected or len(self.rejected) < MAX_REJECTED_KEPT:
                changed |= self.rejected.get(digest) != message
                self.rejected[digest] = message
            else:
                self.rejected_more += 1
                changed = True
            return changed
        self.rejected.pop(_digest(key), None)
        before = self.remote.get(key)
        if before is None:
            if self.per_node.get(found.node, 0) >= self.cap:
                self.over_cap[found.node] = self.over_cap.get(found.node, 0) + 1
                return True
            self.per_node[found.node] = self.per_node.get(found.node, 0) + 1
        elif before == found:
            return False
        self.remote[key] = found
        self._indexed(found, before)
        return True

    def delete(self, key: str) -> tuple[bool, bool]:
        """A key went: (the view changed, a read of everything is due). A node over its
        cap that loses a record may have one to take its place, which only a read finds."""
        node = self.remote[key].node if key in self.remote else ""
        changed = self._drop(key)
        changed |= self.rejected.pop(_digest(key), None) is not None
        return changed, bool(node and self.over_cap.get(node))

    def _drop(self, key: str) -> bool:
        found = self.remote.pop(key, None)
        if found is None:
            return False
        self._indexed(None, found)
        left = self.per_node[found.node] - 1
        if left:
            self.per_node[found.node] = left
        else:
            del self.per_node[found.node]
        return True

    def problems(self) -> dict[str, str]:
        """What to report, each once: the first rejected keys one by one, then one summary,
        and each node over its cap (messages without counts, so they stay the same)."""
        out = {}
        # The first ones as they came: a later key must not push one out and be said.
        for digest, message in itertools.islice(self.rejected.items(), MAX_REJECTED_LISTED):
            out[digest.hex()] = message
        if len(self.rejected) > MAX_REJECTED_LISTED or self.rejected_more:
            out["rejected:more"] = (f"more than {MAX_REJECTED_LISTED} cluster records are "
                                    "ignored; `hostsyncd status --json` counts them")
        for node in sorted(self.over_cap):
            out[f"cap:{node}"] = (f"node {node!r} publishes more than {self.cap} records "
                                  "(cluster.max_records_per_node): the rest are ignored")
        return out

    def counts(self) -> dict[str, Any]:
        return {"rejected": len(self.rejected) + self.rejected_more,
                "over_cap": dict(sorted(self.over_cap.items()))}


def _holder_text(node: str, holder: dict[str, Any]) -> str:
    """Who holds the node name, from its owner key: untrusted, so only plain parts."""
    about = []
    try:
        data = json.loads(unb64(holder.get("value", "")))
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        host, pid = data.get("host"), data.get("pid")
        if isinstance(host, str) and is_docker_name(host):
            about.append(f"host {host[:64]}")
        if isinstance(pid, int) and not isinstance(pid, bool):
            about.append(f"pid {pid}")
    lease = holder.get("lease")
    if lease:
        about.append(f"lease {int(lease):x}")
    who = f" ({', '.join(about)})" if about else ""
    return f"node name {node!r} is held by another daemon{who}: this one does not publish"


def _by_node(container: Container) -> str:
    return container.node


def _digest(key: str) -> bytes:
    # A key may be as large as etcd allows (1.5 MiB): only its digest is kept.
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    connected: bool
    since: float  # wall time of the last change
    reason: str = ""
    endpoint: str = ""


class Cluster:
    """This node's presence in the cluster. `publish` and the readers are thread-safe;
    `on_change` is called (from the cluster's threads) when the remote records or the
    health change."""

    def __init__(self, config: ClusterConfig, on_change: Callable[[], None], log: Any) -> None:
        self.config = config
        self.on_change = on_change
        self.log = log
        self._lock = threading.Condition()
        self._desired: dict[str, bytes] = {}
        self._desired_version = 0
        self._published_from: Snapshot | None = None
        self._view = RemoteView(config.prefix, config.node, config.max_records_per_node)
        self._said: set[str] = set()  # caps already reported
        self._owner = owner_key(config.prefix, config.node)
        self._claimed = False
        self._conflict = ""  # why this daemon does not publish: another holds the name
        self._owner_gone = False  # the watcher saw the name's owner key go
        self._loaded = threading.Event()
        self._failures: dict[str, str] = {"publisher": "connecting", "watcher": "connecting"}
        self._health = ClusterHealth(False, time.time(), "connecting")
        self._warned = False
        self._own_node_prefix = f"{nodes_prefix(config.prefix)}{config.node}/"
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._publish_loop, name="cluster-publish", daemon=True),
            threading.Thread(target=self._watch_loop, name="cluster-watch", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Revoke the lease (so the records go at once) and stop."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._threads[0].join(timeout=REVOKE_TIMEOUT + self.config.timeout)

    def wait_loaded(self, timeout: float) -> bool:
        """Wait for the first range read, so the first sync already knows remote records."""
        return self._loaded.wait(timeout)

    # -- what the daemon reads and says ---------------------------------------------------

    def publish_from(self, snapshot: Snapshot) -> dict[str, str] | None:
        """Publish this node's records as the snapshot gives them. Returns why labelled
        containers are not published (by id), or None if this snapshot already was: passes
        on file writes alone see the same snapshot, with nothing to encode again."""
        if snapshot is self._published_from:
            return None
        self._published_from = snapshot
        cfg = self.config
        records, problems = published(snapshot, cfg.publish_label, cfg.node,
                                      cfg.advertise_network)
        self.publish(records)
        return problems

    def publish(self, records: dict[str, bytes]) -> None:
        """This node's records from now on (by container name); written in the background."""
        with self._lock:
            if records != self._desired:
                self._desired = dict(records)
                self._desired_version += 1
                self._lock.notify_all()

    def remote_records(self, since: int = -1) -> tuple[RemoteIndex, frozenset[str] | None]:
        """Other nodes' records, indexed for a Snapshot (see graph.RemoteIndex), and the
        names that changed after version `since` (None: not known)."""
        with self._lock:
            return self._view.index(), self._view.changed_since(since)

    def rejected(self) -> dict[str, str]:
        """Problems with other nodes' records, each meant to be reported once."""
        with self._lock:
            return self._view.problems()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._health.connected

    def state(self) -> dict[str, Any]:
        with self._lock:
            health = self._health
            published = sorted(self._desired) if self._claimed else []
            claimed, conflict = self._claimed, self._conflict
            remote = {node: list(names) for node, names in sorted(self._view.names.items())}
            ignored = self._view.counts()
        return {
            "enabled": True,
            "node": self.config.node,
            "connected": health.connected,
            "since": health.since,
            "reason": health.reason,
            "endpoint": health.endpoint,
            "published": published,
            "claimed": claimed,
            "conflict": conflict,
            "remote": remote,
            "ignored": ignored,
        }

    # -- health ---------------------------------------------------------------------------

    def _set_health(self, part: str, failure: str | None, endpoint: str) -> None:
        with self._lock:
            if failure is None:
                self._failures.pop(part, None)
            else:
                self._failures[part] = failure
            connected = not self._failures
            reason = "; ".join(f"{k}: {v}" for k, v in sorted(self._failures.items()))
            before = self._health
            # The member shown is the watcher's: the one the records come from.
            endpoint = endpoint if part == "watcher" else before.endpoint
            if (connected, reason, endpoint) == (before.connected, before.reason,
                                                 before.endpoint):
                return
            since = time.time() if connected != before.connected else before.since
            self._health = ClusterHealth(connected, since, reason, endpoint)
            # Said once per outage, and not for the moments before the first answer.
            warn = not connected and not self._warned and any(
                v != "connecting" for v in self._failures.values())
            self._warned = (self._warned or warn) and not connected
        if connected and not before.connected:
            self.log.info("etcd connected", endpoint=endpoint, node=self.config.node)
        elif warn and "permission denied" in reason:
            self.log.warning("etcd refuses this node's user; keeping the last known remote "
                             "records", reason=reason, node=self.config.node)
        elif warn:
            self.log.warning("etcd unreachable; keeping the last known remote records",
                             reason=reason, node=self.config.node)
        self.on_change()

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # -- publisher ------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        client = EtcdClient(self.config)
        lease = 0
        written: dict[str, bytes] | None = None  # None: unknown, read back from etcd
        version = -1
        next_keepalive = 0.0
        backoff = 0.1
        interval = self.config.lease_ttl / 3
        try:
            while not self._stopping.is_set():
                try:
                    if not lease:
                        lease, written = client.grant(self.config.lease_ttl), None
                        self._set_claimed(False, "")
                        next_keepalive = time.monotonic() + interval
                    if time.monotonic() >= next_keepalive:
                        if client.keepalive(lease) <= 0:
                            self.log.warning("etcd lease expired; publishing again",
                                             node=self.config.node)
                            lease = 0
                            continue
                        next_keepalive = time.monotonic() + interval
                    with self._lock:
                        gone, self._owner_gone = self._owner_gone, False
                    if (gone or not self._claimed) and not self._claim(client, lease):
                        written = None
                        self._set_health("publisher", None, client.endpoint)
                        backoff = 0.1
                        # Until the holder goes: the watcher wakes this thread when the
                        # owner key is deleted; a retry each second covers the rest.
                        with self._lock:
                            if not self._owner_gone and not self._stopping.is_set():
                                self._lock.wait(min(1.0, interval, max(
                                    0.0, next_keepalive - time.monotonic())))
                        continue
                    with self._lock:
                        desired, version = dict(self._desired), self._desired_version
                    written = self._write_records(client, lease, desired, written)
                    self._set_health("publisher", None, client.endpoint)
                    backoff = 0.1
                except PermissionDenied:
                    written = None
                    self._set_health("publisher", self._denied("write", self._own_node_prefix),
                                     client.endpoint)
                    self._wait(MAX_BACKOFF)  # the role will not change by itself soon
                    continue
                except EtcdError as exc:
                    written = None
                    self._set_health("publisher", str(exc), client.endpoint)
                    self._wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF, interval)
                    continue
                with self._lock:
                    while (not self._stopping.is_set() and version == self._desired_version
                           and not self._owner_gone and time.monotonic() < next_keepalive):
                        self._lock.wait(max(0.0, next_keepalive - time.monotonic()))
        finally:
            if lease:
                try:
                    client.revoke(lease, REVOKE_TIMEOUT)
                except EtcdError as exc:
                    self.log.warning("could not revoke the etcd lease; records expire with it",
                                     reason=str(exc), node=self.config.node)
            client.close()

    def _claim(self, client: EtcdClient, lease: int) -> bool:
        """Hold this node's name on our lease, unless another daemon holds it."""
        value = json.dumps({"node": self.config.node, "host": socket.gethostname(),
                            "pid": os.getpid(), "since": time.time()}).encode()
        claimed, holder = client.claim(self._owner, value, lease)
        self._set_claimed(claimed, "" if claimed else _holder_text(self.config.node, holder))
        return claimed

    def _set_claimed(self, claimed: bool, conflict: str) -> None:
        with self._lock:
            before = (self._claimed, self._conflict)
            self._claimed, self._conflict = claimed, conflict
        if (claimed, conflict) == before:
            return
        if conflict and not before[1]:
            self.log.warning("node name held by another daemon; not publishing, links on "
                             "this host still served", problem=conflict, node=self.config.node)
        elif claimed and before[1]:
            self.log.info("node name claimed; publishing", node=self.config.node)
        self.on_change()

    def _write_records(self, client: EtcdClient, lease: int, desired: dict[str, bytes],
                       written: dict[str, bytes] | None) -> dict[str, bytes]:
        """Make this node's keys hold `desired`; returns what etcd now holds."""
        if written is None:
            # After a failure (or at start) what etcd holds is unknown: read it back, and
            # drop what an earlier run of this node left behind.
            own = record_key(self.config.prefix, self.config.node, "")
            written = {}
            for _, kvs in client.range_pages(own.encode()):
                for kv in kvs:
                    name = kv_key(kv).removeprefix(own)
                    if name in desired and int(kv.get("lease", 0)) == lease:
                        written[name] = unb64(kv.get("value", ""))
                    elif name not in desired:
                        client.delete(own + name)
        put = [name for name, value in desired.items() if written.get(name) != value]
        deleted = sorted(written.keys() - desired.keys())
        for name in put:
            client.put(record_key(self.config.prefix, self.config.node, name), desired[name],
                       lease)
            written[name] = desired[name]
        for name in deleted:
            client.delete(record_key(self.config.prefix, self.config.node, name))
            del written[name]
        if put or deleted:
            self.log.debug("cluster records written", put=put, deleted=deleted,
                           endpoint=client.endpoint)
        return written

    # -- watcher --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        client = EtcdClient(self.config)
        prefix = nodes_prefix(self.config.prefix).encode()
        backoff = 0.1
        revision = 0  # 0: read everything again before watching
        while not self._stopping.is_set():
            try:
                if not revision:
                    revision = self._read_all(client, prefix)
                    self._loaded.set()
                began = time.monotonic()
                for message in client.watch(prefix, revision + 1):
                    self._set_health("watcher", None, client.endpoint)
                    if self._stopping.is_set():
                        break
                    if message.get("canceled") or message.get("compact_revision"):
                        revision = 0  # compacted past our revision: read everything again
                        break
                    events = message.get("events", [])
                    reread = self._apply_events(events)
                    for event in events:
                        revision = max(revision, int(event.get("kv", {}).get("mod_revision", 0)))
                    if reread:
                        revision = 0
                        break
                # A stream that breaks at once again and again must not spin.
                if time.monotonic() - began < 1.0:
                    self._wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                else:
                    backoff = 0.1
            except WatchTooLarge as exc:
                # Read everything again (paged); the watch then starts after that message.
                revision = 0
                self._say_once("watch", "etcd watch message too large; reading every "
                               "record again instead", reason=str(exc))
                self._wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except PermissionDenied:
                revision = 0
                self._set_health("watcher", self._denied("read", nodes_prefix(
                    self.config.prefix)), client.endpoint)
                self._wait(MAX_BACKOFF)
            except EtcdError as exc:
                revision = 0
                self._set_health("watcher", str(exc), client.endpoint)
                self._wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        client.close()

    def _denied(self, access: str, prefix: str) -> str:
        user = repr(self.config.username) if self.config.username else "(no user)"
        role = "readwrite" if access == "write" else "read"
        return (f"permission denied: etcd user {user} may not {access} {prefix} (its role "
                f"needs {role} on that prefix; README: one etcd user and role per node)")

    def _say_once(self, what: str, message: str, **fields: Any) -> None:
        if what not in self._said:
            self._said.add(what)
            self.log.warning(message, node=self.config.node, **fields)

    def _read_all(self, client: EtcdClient, prefix: bytes) -> int:
        """Every node's records, page by page, into a new view; its revision."""
        view = RemoteView(self.config.prefix, self.config.node,
                          self.config.max_records_per_node)
        revision = pages = 0
        for at, kvs in client.range_pages(prefix):
            revision = at
            pages += 1
            for kv in kvs:
                view.put(kv)
        if pages > 1:
            self._say_once("paged", "etcd range read paged", pages=pages)
        with self._lock:
            changed = view.state() != self._view.state()
            # Versions go on from the old view's, with no names to say what changed: a
            # daemon that took the old view plans everything once.
            view.follow(self._view)
            self._view = view
        if changed:
            self.on_change()
        return revision

    def _apply_events(self, events: list[dict[str, Any]]) -> bool:
        """Watch events into the view; True if everything must be read again."""
        changed = reread = False
        with self._lock:
            for event in events:
                kv = event.get("kv", {})
                if event.get("type") == "DELETE":
                    key = kv_key(kv)
                    if key == self._owner:
                        # The name is free (its holder went, or ours was deleted): claim
                        # it now, not at the next retry.
                        self._owner_gone = True
                        self._lock.notify_all()
                    gone, due = self._view.delete(key)
                    changed |= gone
                    reread |= due
                else:  # PUT: the gateway leaves out type 0
                    changed |= self._view.put(kv)
        if changed:
            self.on_change()
        return reread
