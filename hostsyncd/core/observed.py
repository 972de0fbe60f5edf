"""What the daemon believes about the engine: the last list, corrected by newer events.

The list call is the truth, but it lags: right after a network connect it may still show no
address, and right after a container dies it may still show it running. While a rename is
under way it shows the container under both its old and its new name, sometimes even in a
list taken after the rename event, so it cannot say which name is current. Events that arrive
after a list are kept as overrides on top of it until a later list agrees with them (or they
are old enough that the list must have caught up).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hostsyncd.core.graph import Snapshot
from hostsyncd.core.model import Container, Endpoint

# Longer than any lag seen between an event and the list reflecting it, by far.
OVERRIDE_TTL = 30.0


@dataclass(slots=True)
class _Override:
    since: float
    name: str = ""
    stopped: bool = False
    # network id -> endpoint now, or None once disconnected
    endpoints: dict[str, Endpoint | None] = field(default_factory=dict)
    # Set by a rename: the container is called `name` now, and no longer this ("" if the
    # engine did not say); None without a rename.
    old_name: str | None = None


class ObservedState:
    def __init__(self) -> None:
        self._listed: dict[str, Container] = {}
        self._overrides: dict[str, _Override] = {}
        self._snapshot: Snapshot | None = None
        self._remote: tuple[Container, ...] = ()
        self._node: str | None = None
        self._bare_names = False

    def cluster(self, node: str | None, remote: tuple[Container, ...],
                bare_names: bool = False) -> bool:
        """Other nodes' published records, as last known; node None: no cluster. True if
        that changed anything. `bare_names`: see Snapshot."""
        if (node, remote, bare_names) == (self._node, self._remote, self._bare_names):
            return False
        self._node, self._remote, self._bare_names = node, remote, bare_names
        self._snapshot = None
        return True

    def listed(self, containers: list[Container], now: float) -> None:
        """A fresh list: keep only the overrides it does not yet reflect."""
        self._listed = {c.id: c for c in containers}
        for cid, override in list(self._overrides.items()):
            if now - override.since > OVERRIDE_TTL or _agrees(self._listed.get(cid), override):
                del self._overrides[cid]
        self._snapshot = None

    def forget_events(self) -> None:
        """Drop every override: after a reconnect, the events they came from are history
        and the next list is the whole truth (what happened in between was not seen)."""
        self._overrides.clear()
        self._snapshot = None

    def connected(self, container_id: str, name: str, endpoint: Endpoint, now: float) -> None:
        """A container joined a network: it is running (or starting) with this address."""
        override = self._override(container_id, now)
        override.stopped = False
        override.name = name or override.name
        override.endpoints[endpoint.network_id] = endpoint

    def disconnected(self, container_id: str, network_id: str, now: float) -> None:
        self._override(container_id, now).endpoints[network_id] = None

    def stopped(self, container_id: str, now: float) -> None:
        """Died or destroyed: its addresses are free for others to take from now on."""
        override = self._override(container_id, now)
        override.stopped = True
        override.endpoints.clear()

    def renamed(self, container_id: str, name: str, old_name: str, now: float) -> None:
        """The engine renamed a container from `old_name` to `name`. A list that still shows
        the old name (alone, or beside the new one mid-rename) is corrected until one shows
        the old name no more."""
        override = self._override(container_id, now)
        override.name = name
        override.old_name = old_name

    def _override(self, container_id: str, now: float) -> _Override:
        self._snapshot = None
        override = self._overrides.setdefault(container_id, _Override(now))
        override.since = now
        return override

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            merged = dict(self._listed)
            for cid, override in self._overrides.items():
                merged[cid] = _apply(merged.get(cid), cid, override)
            self._snapshot = Snapshot(
                (c for c in merged.values() if c is not None), self._remote, self._node,
                self._bare_names,
            )
        return self._snapshot


def _apply(listed: Container | None, cid: str, override: _Override) -> Container:
    base = listed or Container(id=cid, name=override.name or cid[:12], state="created")
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
