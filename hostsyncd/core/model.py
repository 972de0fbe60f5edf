"""Plain records the core works on. The engine edge builds them; nothing here does I/O.

Imports: nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

# Docker's container states in which the container holds its network addresses.
ADDRESSED_STATES = frozenset({"running", "paused"})
# States in which a dependent's hosts file is mounted and worth keeping current.
LIVE_STATES = frozenset({"running", "paused", "restarting"})

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# A dependent's own choice of `links.health` ("wait" or "ignore").
HEALTH_LABEL = "hostsyncd.health"
# A dependent's own search domain (links.domain): its lines also carry `<name>.<domain>`.
DOMAIN_LABEL = "hostsyncd.domain"
# A target's health while it has a HEALTHCHECK and runs. "" means no healthcheck (or none
# known): such a target is never held back. A stopped target known to have one is given
# STARTING, which is what it will be when it starts: the engine sends no event for that.
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
HEALTH_STATES = frozenset({STARTING, HEALTHY, UNHEALTHY})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A container's attachment to one network."""

    network: str
    network_id: str = ""
    ipv4: str = ""
    ipv6: str = ""


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    state: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    network_mode: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    # The cluster node that published this container; "" for the local engine's own.
    node: str = ""
    # The container mounts a file of its own on /etc/hosts (`-v FILE:/etc/hosts`): it reads
    # that, never the hosts file the engine keeps for it.
    hosts_mounted: bool = False
    # The healthcheck's status (HEALTH_STATES), or "" without a healthcheck.
    health: str = ""
    # Further names the engine listed the container under besides `name`. Only while a
    # rename is under way: the list then shows both the old and the new name, and cannot
    # say which is which (the observed state settles it from the rename event).
    other_names: tuple[str, ...] = ()

    @property
    def has_address(self) -> bool:
        return self.state in ADDRESSED_STATES

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def compose_project(self) -> str | None:
        return self.labels.get(COMPOSE_PROJECT)

    @property
    def compose_service(self) -> str | None:
        return self.labels.get(COMPOSE_SERVICE)

    def endpoint(self, network: str) -> Endpoint | None:
        """The endpoint on a network given by name or id."""
        for ep in self.endpoints:
            if network in (ep.network, ep.network_id):
                return ep
        return None


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One parsed `[node/]target[:alias][@network]` entry of a dependent's label."""

    target: str
    alias: str
    network: str | None = None
    node: str | None = None

    def __str__(self) -> str:
        text = self.target if self.alias == self.target else f"{self.target}:{self.alias}"
        if self.node is not None:
            text = f"{self.node}/{text}"
        return f"{text}@{self.network}" if self.network else text


class HostLine(NamedTuple):
    """One line of the block. A named tuple: the core makes one per link per pass."""

    ip: str
    names: tuple[str, ...]

    def render(self) -> str:
        return f"{self.ip}\t{' '.join(self.names)}"
