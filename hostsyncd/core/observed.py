"""What the daemon believes about the engine: the last list, corrected by newer events.

The list call is the truth, but it lags: right after a network connect it may still show no
address, and right after a container dies it may still show it running. While a rename is
under way it shows the container under both its old and its new name, sometimes even in a
list taken after the rename event, so it cannot say which name is current. Events that arrive
after a list are kept as overrides on top of it until a later list agrees with them (or they
are old enough that the list must have caught up).

It also says which containers changed since the decider last asked (`take_changes`), so an
event costs the dependents it touches: the snapshot is updated for those containers only,
and only a list call compares the fleet (each listed container with the one before it).

Imports: core.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from hostsyncd.core.graph import RemoteIndex, Snapshot
from hostsyncd.core.model import STARTING, Container, Endpoint

# Longer than any lag seen between an event and the list reflecting it, by far.
OVERRIDE_TTL = 30.0


@dataclass(slots=True)
class _Override:
    since: float
    name: str = ""
    stopped: bool = False
    # network id -> endpoint now, or None once disconnected
    endpoints: dict[str, Endpoint | None] = field(default_factory=dict)
    # The last `health_status` event's status; "" if none since the last stop.
    health: str = ""
    # Stopped since the list: a healthcheck starts over (STARTING) with the next start, and
    # the engine sends no event for that.
    health_reset: bool = False
    # Set by a rename: the container is called `name` now, and no longer this ("" if the
    # engine did not say); None without a rename.
    old_name: str | None = None


class ObservedState:
    def __init__(self) -> None:
        self._listed: dict[str, Container] = {}
        self._overrides: dict[str, _Override] = {}
        self._snapshot: Snapshot | None = None
        self._remote: Iterable[Container] | RemoteIndex = ()
        # Names whose records changed since the last `take_changes`; None: unknown.
        self._remote_changes: set[str] | None = set()
        self._remote_stale = False
        self._node: str | None = None
        self._bare_names = False
        # Ids whose container may differ from the last snapshot built, and from the last
        # `take_changes`; None: unknown (nothing built yet), so everything.
        self._stale: set[str] | None = None
        self._changes: set[str] | None = None
        # Containers seen with a healthcheck, with their last health: the list shows health
        # only while a container runs and is not paused. A stopped one is STARTING (what it
        # will be when it starts), a paused one keeps its last. A container's healthcheck
        # is fixed at create; this holds only listed containers.
        self._healthchecked: dict[str, str] = {}

    def cluster(self, node: str | None, remote: Iterable[Container] | RemoteIndex,
                bare_names: bool = False, changed: Iterable[str] | None = None) -> bool:
        """Other nodes' published records, as last known; node None: no cluster. True if
        that changed anything. `bare_names`: see Snapshot. `changed`: the names whose
        records changed since the last call, if the caller knows them; then only the
        dependents linking to those names are planned again."""
        if (node, remote, bare_names) == (self._node, self._remote, self._bare_names):
            return False
        if changed is None or (node, bare_names) != (self._node, self._bare_names):
            self._snapshot = None  # rebuilt with the new records; the core plans everything
            self._remote_changes = None
        else:
            self._remote_stale = True
            if self._remote_changes is not None:
                self._remote_changes.update(changed)
        self._node, self._remote, self._bare_names = node, remote, bare_names
        return True

    def listed(self, containers: list[Container], now: float,
               only: Collection[str] | None = None) -> None:
        """A fresh list: keep only the overrides it does not yet reflect. `only`: the list
        was asked for these containers alone (by id), so it says nothing of the others,
        and a container among them that it leaves out is gone."""
        before = self._listed
        fresh: dict[str, Container] = {}
        changed: set[str] = set()
        for c in containers:
            if only is not None and c.id not in only:
                continue  # an id filter matches by pattern: nothing else is taken
            old = before.get(c.id)
            if old is not None and old == c:
                c = old  # the same object: what did not change is found by identity later
            else:
                changed.add(c.id)
            fresh[c.id] = c
        if only is None:
            listed = fresh
            changed.update(cid for cid in before if cid not in listed)
        else:
            listed = before  # a partial list updates the last one in place
            for cid in only:
                if cid not in fresh and listed.pop(cid, None) is not None:
                    changed.add(cid)
            listed.update(fresh)
        self._listed = listed
        known = self._healthchecked
        health = {c.id: c.health or (known[c.id] if c.has_address else STARTING)
                  for c in fresh.values() if c.health or c.id in known}
        was = known if only is None else {cid: known[cid] for cid in only if cid in known}
        if only is None:
            self._healthchecked = health
        else:
            for cid in was:
                del known[cid]
            known.update(health)
        changed.update(cid for cid, found in health.items() if was.get(cid) != found)
        changed.update(cid for cid in was if cid not in health)
        overrides = self._overrides if only is None \
            else {cid: self._overrides[cid] for cid in only if cid in self._overrides}
        for cid, override in list(overrides.items()):
            if now - override.since > OVERRIDE_TTL or _agrees(listed.get(cid), override):
                del self._overrides[cid]
                changed.add(cid)
        self._touch(changed)

    def forget_events(self) -> None:
        """Drop every override: after a reconnect, the events they came from are history
        and the next list is the whole truth (what happened in between was not seen)."""
        self._touch(set(self._overrides))
        self._overrides.clear()

    def connected(self, container_id: str, name: str, endpoint: Endpoint, now: float) -> None:
        """A container joined a network: it is running (or starting) with this address."""
        override = self._override(container_id, now)
        override.stopped = False
        override.name = name or override.name
        override.endpoints[endpoint.network_id] = endpoint

    def health(self, container_id: str, status: str, now: float) -> None:
        """A `health_status` event: the engine's newest word on the healthcheck."""
        override = self._override(container_id, now)
        override.health = status
        override.health_reset = False
        self._healthchecked[container_id] = status

    def healthchecked(self, container_id: str) -> None:
        """The engine says this (stopped) container has a healthcheck."""
        if container_id not in self._healthchecked:
            self._healthchecked[container_id] = STARTING
            self._touch({container_id})

    def disconnected(self, container_id: str, network_id: str, now: float) -> None:
        self._override(container_id, now).endpoints[network_id] = None

    def stopped(self, container_id: str, now: float) -> None:
        """Died or destroyed: its addresses are free for others to take from now on."""
        override = self._override(container_id, now)
        override.stopped = True
        override.endpoints.clear()
        override.health, override.health_reset = "", True
        if container_id in self._healthchecked:
            self._healthchecked[container_id] = STARTING

    def renamed(self, container_id: str, name: str, old_name: str, now: float) -> None:
        """The engine renamed a container from `old_name` to `name`. A list that still shows
        the old name (alone, or beside the new one mid-rename) is corrected until one shows
        the old name no more."""
        override = self._override(container_id, now)
        override.name = name
        override.old_name = old_name

    def _override(self, container_id: str, now: float) -> _Override:
        self._touch({container_id})
        override = self._overrides.setdefault(container_id, _Override(now))
        override.since = now
        return override

    def _touch(self, ids: set[str]) -> None:
        if self._stale is not None:
            self._stale |= ids
        if self._changes is not None:
            self._changes |= ids

    def take_changes(self) -> frozenset[str] | None:
        """The containers that changed since the last call (None: since ever, as at the
        start), for `core.reconcile`. The snapshot to go with it is `snapshot()`."""
        changes = self._changes
        self._changes = set()
        return frozenset(changes) if changes is not None else None

    def take_remote_changes(self) -> frozenset[str] | None:
        """The names whose remote records changed since the last call (None: unknown, so
        every dependent), for `core.reconcile`, alongside `take_changes`."""
        changes = self._remote_changes
        self._remote_changes = set()
        return frozenset(changes) if changes is not None else None

    def snapshot(self) -> Snapshot:
        stale = self._stale
        if self._snapshot is None or stale is None:
            merged = dict(self._listed)
            for cid, override in self._overrides.items():
                merged[cid] = _apply(merged.get(cid), cid, override)
            self._snapshot = Snapshot(
                (self._with_health(c) for c in merged.values() if c is not None),
                self._remote, self._node, self._bare_names,
            )
            # Built from scratch: whatever dropped the last one, the decider plans all.
            self._changes = None
            self._remote_stale = False
        elif stale:
            self._snapshot = self._snapshot.updated({cid: self._merged(cid) for cid in stale})
        if self._remote_stale:
            self._snapshot = self._snapshot.with_remote(self._remote)
            self._remote_stale = False
        self._stale = set()
        return self._snapshot

    def _merged(self, cid: str) -> Container | None:
        override = self._overrides.get(cid)
        listed = self._listed.get(cid)
        found = _apply(listed, cid, override) if override is not None else listed
        return self._with_health(found) if found is not None else None

    def _with_health(self, container: Container) -> Container:
        known = self._healthchecked.get(container.id)
        if container.health or known is None:
            return container
        return replace(container, health=known)


def _apply(listed: Container | None, cid: str, override: _Override) -> Container:
    base = listed or Container(id=cid, name=override.name or cid[:12], state="created")
    if override.health:
        base = replace(base, health=override.health)
    elif override.health_reset and base.health:
        base = replace(base, health=STARTING)
    if override.old_name is not None and {override.name, override.old_name} & _names(base):
        # The rename event's word over a list taken before it, or mid-rename. A list
        # showing neither name already shows a later rename: its word stands.
        base = replace(base, name=override.name, other_names=())
    if override.stopped:
        state = "exited" if base.state in ("running", "paused", "restarting") else base.state
        # Its addresses are gone, its networks not: the start fast path asks those networks
        # for the target when it starts again (as a list call would show them).
        networks = tuple(replace(ep, ipv4="", ipv6="") for ep in base.endpoints)
        return replace(base, state=state, endpoints=networks)
    endpoints = {ep.network_id or ep.network: ep for ep in base.endpoints}
    for network_id, endpoint in override.endpoints.items():
        if endpoint is None:
            endpoints.pop(network_id, None)
        else:
            endpoints[network_id] = endpoint
    # A connect means the container is starting; a disconnect alone says nothing about it.
    started = any(ep is not None for ep in override.endpoints.values())
    state = "running" if started and not base.has_address else base.state
    ordered = tuple(sorted(endpoints.values(), key=lambda ep: ep.network))
    return replace(base, state=state, endpoints=ordered)


def _names(container: Container) -> set[str]:
    return {container.name, *container.other_names}


def _renaming(listed: Container, override: _Override) -> bool:
    """The list does not show the rename in full yet: it still has the old name, or (the
    old name unknown) the new one beside another."""
    names = _names(listed)
    if override.old_name:
        return override.old_name in names
    return override.name in names and len(names) > 1


def _agrees(listed: Container | None, override: _Override) -> bool:
    # Only a list that shows health can contradict a health event; a stopped or paused
    # container's shows none (what is known of it is kept in _healthchecked).
    if override.health and listed is not None and listed.health \
            and listed.health != override.health:
        return False
    if override.old_name is not None and listed is not None and _renaming(listed, override):
        return False
    if override.stopped:
        return listed is None or not listed.has_address
    if not override.endpoints:
        return True  # only a rename, which the list shows
    if listed is None or not listed.has_address:
        return False
    for network_id, endpoint in override.endpoints.items():
        now = listed.endpoint(network_id)
        if endpoint is None:
            if now is not None:
                return False
        elif now is None or (now.ipv4, now.ipv6) != (endpoint.ipv4, endpoint.ipv6):
            return False
    return True
