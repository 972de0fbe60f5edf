"""Containers and endpoints for the core's unit tests: ids derived from names, so a test
can refer to any container by name alone."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from types import MappingProxyType
from typing import Any

from hostsyncd.core.model import COMPOSE_PROJECT, COMPOSE_SERVICE, Container, Endpoint

LINKS = "hostsyncd.links"


def examples(n: int) -> int:
    """A property test's example count: `n`, or a tenth of it (at least 50) under `make
    mutation` ($HSD_MUTATION set), where every mutant reruns the tests that reach it. A
    mutant that such a test kills is nearly always killed by its first examples; fewer can
    only lower the score, never raise it."""
    return max(50, n // 10) if os.environ.get("HSD_MUTATION") else n


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def net(name: str, ipv4: str = "", ipv6: str = "", network_id: str | None = None) -> Endpoint:
    return Endpoint(
        network=name,
        network_id=network_id if network_id is not None else cid("net:" + name),
        ipv4=ipv4,
        ipv6=ipv6,
    )


def ctr(
    name: str,
    *endpoints: Endpoint,
    state: str = "running",
    links: str | None = None,
    project: str | None = None,
    service: str | None = None,
    network_mode: str = "",
    labels: dict[str, str] | None = None,
) -> Container:
    all_labels = dict(labels or {})
    if links is not None:
        all_labels[LINKS] = links
    if project is not None:
        all_labels[COMPOSE_PROJECT] = project
    if service is not None:
        all_labels[COMPOSE_SERVICE] = service
    return Container(
        id=cid(name),
        name=name,
        state=state,
        labels=MappingProxyType(all_labels),
        network_mode=network_mode,
        endpoints=tuple(endpoints),
    )


class NullLog:
    """A logger that takes every call and says nothing."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


class ListingEngine:
    """An engine whose list call gives the test's containers (change them in place)."""

    def __init__(self, containers: list[Container]) -> None:
        self.containers = containers
        self.calls = 0
        self.podman = False  # a Docker engine: hosts files at <root>/<id>/hosts
        self.asked: list[frozenset[str] | None] = []  # each list call's ids (None: all)

    def list_containers(self, ids: Collection[str] | None = None) -> list[Container]:
        self.asked.append(frozenset(ids) if ids is not None else None)
        return [c for c in self.containers if ids is None or c.id in ids]


class Clock:
    """A clock the test moves by setting `now`."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now
