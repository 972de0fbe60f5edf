"""From a snapshot of containers to the lines each dependent's hosts file should hold.

Imports: core.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import NamedTuple

from hostsyncd.core.links import (
    MAX_LABEL_CHARS,
    SpecError,
    health_wait,
    is_host_name,
    link_domain,
    parse_links,
)
from hostsyncd.core.model import (
    DOMAIN_LABEL,
    HEALTH_LABEL,
    HEALTHY,
    STARTING,
    Container,
    Endpoint,
    HostLine,
    LinkSpec,
)

# Docker refuses longer `container:` chains anyway; the bound only guards against cycles.
_MAX_NETNS_HOPS = 8


class Problem(Enum):
    """Why a link gives no address."""

    MISSING = "no such container"
    NOT_RUNNING = "target is not running"
    HOST_NETWORK = "target uses the host's network and has no address of its own"
    NO_ADDRESS = "target has no address on a usable network"
    # On no network at all: disconnected from every one, which is also how a stop begins on
    # Docker 26 and newer (they release the networks before the `die` event; 20.10 after).
    DETACHED = "target is on no network"
    NOT_ON_NETWORK = "target is not on the pinned network"
    NOT_PUBLISHED = "that node publishes no container of this name"
    AMBIGUOUS = "published by several nodes; name one as node/target"
    NO_CLUSTER = "node/target links need [cluster] enabled"
    BARE_REMOTE = ("not on this host, and a bare name does not reach other nodes "
                   "(cluster.resolve_bare_names); link to it as node/target")
    # links.health = "wait" (or the dependent's label): the target runs, but its
    # healthcheck says starting or unhealthy. No line, so the dependent's clients fail fast
    # instead of connecting to a service that is not ready.
    WAITING_HEALTH = "waiting for health"


# Problems of a target that was there and went: what `on_target_stop = "keep"` papers over.
# DETACHED too: on Docker 26 and newer a stopping target is first seen without networks,
# and the lines dropped then would be gone by the time its `die` says it stopped.
GONE = frozenset({Problem.NOT_RUNNING, Problem.MISSING, Problem.NOT_PUBLISHED,
                  Problem.DETACHED, Problem.BARE_REMOTE})


class Resolution(NamedTuple):
    """How one link resolved. A named tuple: the core makes one per link per pass."""

    spec: LinkSpec
    lines: tuple[HostLine, ...] = ()
    problem: Problem | None = None
    # Names of the containers that gave the lines (node/name for published ones); for an
    # ambiguous link, the candidates.
    targets: tuple[str, ...] = ()
    network: str = ""

    @property
    def resolved(self) -> bool:
        return self.problem is None


# Why a dependent's file is not written, though it has links.
UNMANAGED_MOUNT = "mounts its own /etc/hosts; not managed"
UNMANAGED_NO_OWNER = ("shares the network namespace of a container that is gone; no hosts "
                      "file to write")


@dataclass(frozen=True, slots=True)
class DependentPlan:
    dependent: Container
    links: tuple[Resolution, ...]
    errors: tuple[SpecError, ...]
    # Set when no file the dependent reads can be written (UNMANAGED_*): its links are
    # still resolved, for status and graph, but nothing is written for it.
    unmanaged: str | None = None
    # The container whose hosts file the dependent reads: itself, or for `--network
    # container:<x>` (a sidecar) the namespace's owner, whose file Docker mounts.
    hosts_file: str = ""
    hosts_file_owner: str = ""  # that container's name
    # Its links wait for their targets' health (links.health, or its HEALTH_LABEL).
    health_wait: bool = False
    # Its HEALTH_LABEL value was invalid: why, and that the config's value is used.
    health_error: str | None = None
    # Its DOMAIN_LABEL value was invalid: likewise.
    domain_error: str | None = None

    def lines(
        self, keep_stopped: bool = False, kept: Mapping[str, tuple[HostLine, ...]] | None = None
    ) -> list[HostLine]:
        """The block's lines, in label order, each once.

        With keep_stopped, a link whose target went keeps `kept[alias]`: the lines the
        engine last gave for it (see `kept_lines`). Never lines read back from the file:
        its content is the container's, not the engine's word.
        """
        out: dict[HostLine, None] = {}
        for link in self.links:
            if link.resolved:
                out.update(dict.fromkeys(link.lines))
            elif keep_stopped and kept and link.problem in GONE:
                out.update(dict.fromkeys(kept.get(link.spec.alias, ())))
        return list(out)

    def kept_lines(
        self, before: Mapping[str, tuple[HostLine, ...]] | None
    ) -> dict[str, tuple[HostLine, ...]]:
        """What keep mode remembers after this plan: per alias, the engine's lines when the
        link resolved, else what was remembered before (only for a target that went)."""
        kept: dict[str, tuple[HostLine, ...]] = {}
        for link in self.links:
            alias = link.spec.alias
            if link.resolved:
                kept[alias] = link.lines
            elif link.problem in GONE and before and alias in before:
                kept[alias] = before[alias]
        return kept


class RemoteIndex(NamedTuple):
    """Other nodes' records, already indexed as a Snapshot looks them up: built
    incrementally by the cluster edge, so that a remote change costs a copy of two dicts,
    not indexing every record again. Read-only once handed over; `version` changes with
    every change."""

    version: int
    by_key: Mapping[tuple[str, str], Container]  # (node, name)
    by_name: Mapping[str, list[Container]]  # each list sorted by node


class Snapshot:
    """Containers indexed the ways links look them up.

    `remote` holds the records other cluster nodes publish, as containers with `node` set;
    `node` is this host's node name, or None when the cluster is off. `bare_names`: a bare
    name may resolve to another node's record (`cluster.resolve_bare_names`).
    """

    def __init__(
        self,
        containers: Iterable[Container],
        remote: Iterable[Container] | RemoteIndex = (),
        node: str | None = None,
        bare_names: bool = False,
    ) -> None:
        self.node = node
        self.bare_names = bare_names
        # What the remote records were made from: the same object until they change, so
        # telling whether they changed costs nothing.
        self.remote_source: object = remote
        self.remote: Mapping[tuple[str, str], Container]
        self.remote_by_name: Mapping[str, list[Container]]
        if isinstance(remote, RemoteIndex):  # sorted, and without this node's own records
            self.remote, self.remote_by_name = remote.by_key, remote.by_name
        else:
            by_key: dict[tuple[str, str], Container] = {}
            by_name: dict[str, list[Container]] = defaultdict(list)
            for c in remote:
                # Our own records come back from the store; the engine knows them better.
                if c.node != node:
                    by_key[c.node, c.name] = c
                    by_name[c.name].append(c)
            for published in by_name.values():
                published.sort(key=lambda c: c.node)
            self.remote, self.remote_by_name = by_key, by_name
        self.by_id: dict[str, Container] = {}
        self.by_name: dict[str, Container] = {}
        self.by_service: dict[tuple[str, str], list[Container]] = defaultdict(list)
        # Names more than one container holds: for a moment, the observed state can show a
        # removed container (kept by an event) beside the one that took its name.
        self.shared_names: set[str] = set()
        for c in containers:
            self.by_id[c.id] = c
            held = self.by_name.get(c.name)
            if held is not None:
                self.shared_names.add(c.name)
            if held is None or _rank(c) > _rank(held):
                self.by_name[c.name] = c
            project, service = c.compose_project, c.compose_service
            if project is not None and service is not None:
                self.by_service[project, service].append(c)
        for replicas in self.by_service.values():
            replicas.sort(key=_replica_order)

    def replaced(self, container: Container) -> Snapshot:
        """A copy with one container (same id) swapped in."""
        return self.updated({container.id: container})

    def updated(self, changes: Mapping[str, Container | None]) -> Snapshot:
        """A copy with these containers swapped in (None: gone): a few dict copies in C
        instead of indexing every container again. Other nodes' records are shared."""
        new = Snapshot((), node=self.node, bare_names=self.bare_names)
        new.remote, new.remote_by_name = self.remote, self.remote_by_name  # never changed
        new.remote_source = self.remote_source
        new.by_id, new.by_name = dict(self.by_id), dict(self.by_name)
        new.by_service.update(self.by_service)
        new.shared_names = set(self.shared_names)
        services: set[tuple[str, str]] = set()
        names: set[str] = set()
        by_id, by_name = new.by_id, new.by_name
        for cid, container in changes.items():
            old = by_id.get(cid)
            if old is not None:
                services.add(_service_of(old))
                names.add(old.name)
                if by_name.get(old.name) is old and (container is None
                                                     or container.name != old.name):
                    del by_name[old.name]
            if container is None:
                if old is not None:
                    del by_id[cid]
                continue
            # Assigned in place, not popped and put back: a dict with holes left by pops
            # takes the slow path when the next event copies it.
            by_id[cid] = container
            services.add(_service_of(container))
            names.add(container.name)
            held = by_name.get(container.name)
            if held is not None and held.id != cid:
                new.shared_names.add(container.name)
            if held is None or held.id == cid or _rank(container) > _rank(held):
                by_name[container.name] = container
        for name in names & new.shared_names:
            # Rare: who holds a shared name now is found the slow way.
            holders = [c for c in new.by_id.values() if c.name == name]
            if holders:
                new.by_name[name] = max(holders, key=_rank)
            if len(holders) < 2:
                new.shared_names.discard(name)
        for key in services - {_NO_SERVICE}:
            replicas = [c for c in new.by_service.get(key, ()) if c.id not in changes]
            replicas += [c for c in changes.values()
                         if c is not None and _service_of(c) == key]
            if replicas:
                replicas.sort(key=_replica_order)
                new.by_service[key] = replicas
            else:
                new.by_service.pop(key, None)
        return new

    def with_remote(self, remote: Iterable[Container] | RemoteIndex) -> Snapshot:
        """A copy with other nodes' records replaced; the local indexes are shared (a
        Snapshot's dicts are never changed once it is built)."""
        new = Snapshot((), remote, self.node, self.bare_names)
        new.by_id, new.by_name, new.by_service = self.by_id, self.by_name, self.by_service
        new.shared_names = self.shared_names
        return new

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[Container]:
        return iter(self.by_id.values())

    def find(self, ref: str) -> Container | None:
        """A container by id, name, or unique id prefix (as `container:<ref>` may give)."""
        found = self.by_id.get(ref) or self.by_name.get(ref)
        if found is None and len(ref) >= 12:
            matches = [c for cid, c in self.by_id.items() if cid.startswith(ref)]
            found = matches[0] if len(matches) == 1 else None
        return found


_NO_SERVICE = ("", "")


def _rank(container: Container) -> tuple[bool, bool, str]:
    """Which of the containers holding one name a link means: a running one, then a live
    one; the id only makes the choice the same however the snapshot was built."""
    return container.has_address, container.is_live, container.id


def _replica_order(container: Container) -> tuple[str, str]:
    # By name; the id only makes the order the same however the snapshot was built.
    return container.name, container.id


def _service_of(container: Container) -> tuple[str, str]:
    project, service = container.compose_project, container.compose_service
    return (project, service) if project is not None and service is not None else _NO_SERVICE


class _LabelCache:
    """Parsed label values, least recently used first out, bounded in bytes.

    Label values are written by whoever creates a container, so an entry count alone
    bounds nothing: 300 distinct 1 MiB labels would pin 300 MiB. Keys are cut to what
    `parse_links` reads anyway, and the cache holds at most `max_bytes` of them (counted
    twice: the key, and what was parsed from it). Every dependent's label is usually
    distinct, so the budget is sized for a large fleet of ordinary labels.
    """

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, tuple[tuple[LinkSpec, ...], tuple[SpecError, ...]]] = (
            OrderedDict()
        )

    @staticmethod
    def _cost(key: str) -> int:
        return 2 * len(key) + 256

    def __call__(self, value: str) -> tuple[tuple[LinkSpec, ...], tuple[SpecError, ...]]:
        key = value[: MAX_LABEL_CHARS + 1]  # parse_links reads no further
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        parsed = parse_links(key)
        cost = self._cost(key)
        if cost <= self.max_bytes:
            self._entries[key] = parsed
            self.size += cost
            while self.size > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self.size -= self._cost(old)
        return parsed

    def __len__(self) -> int:
        return len(self._entries)


parsed_label = _LabelCache()


def netns_owner(snapshot: Snapshot, container: Container) -> Container | None:
    """The container whose network namespace this one uses (itself, unless `container:`)."""
    current = container
    for _ in range(_MAX_NETNS_HOPS):
        mode = current.network_mode
        if not mode.startswith("container:"):
            return current
        joined = snapshot.find(mode.removeprefix("container:"))
        if joined is None:
            return None
        current = joined
    return None


def choose_endpoint(
    target: Sequence[Endpoint], dependent: Sequence[Endpoint] | frozenset[str], pinned: str | None
) -> Endpoint | Problem:
    """The pinned network; else the first shared network by name; else the first by name.

    `dependent` is the dependent's endpoints, or the set of its network ids (or names)."""
    usable = [ep for ep in target if ep.ipv4 or ep.ipv6]
    if len(usable) > 1:
        usable.sort(key=_network_name)
    if pinned is not None:
        for ep in usable:
            if pinned in (ep.network, ep.network_id):
                return ep
        return Problem.NOT_ON_NETWORK
    if not usable:
        return Problem.NO_ADDRESS
    mine = dependent if isinstance(dependent, frozenset) else network_keys(dependent)
    for ep in usable:
        if (ep.network_id or ep.network) in mine:
            return ep
    return usable[0]


def network_keys(endpoints: Iterable[Endpoint]) -> frozenset[str]:
    return frozenset(ep.network_id or ep.network for ep in endpoints)


def _network_name(endpoint: Endpoint) -> str:
    return endpoint.network


def _lines_for(endpoint: Endpoint, alias: str, name: str, domain: str = "") -> list[HostLine]:
    """The short names first (a resolver's canonical name is the first), then each with
    the search domain; a name that the domain would make too long is left without it."""
    names = [alias] if name == alias or not is_host_name(name) else [alias, name]
    if domain:
        names += [long for short in names if is_host_name(long := f"{short}.{domain}")]
    found = tuple(names)
    return [HostLine(ip, found) for ip in (endpoint.ipv4, endpoint.ipv6) if ip]


def resolve(
    snapshot: Snapshot, dependent: Container, spec: LinkSpec, mine: frozenset[str] | None = None,
    wait_health: bool = False, domain: str = "",
) -> Resolution:
    """One link of a dependent; `mine` is the dependent's network keys, if already known.
    With `wait_health`, a target whose healthcheck is not (yet) healthy gives no line."""
    targets = _targets(snapshot, dependent.compose_project, spec)
    if isinstance(targets, Problem):
        return Resolution(spec, problem=targets)
    if targets and targets[0].node and len(targets) > 1:
        # Several nodes publish the name: guessing would link to the wrong host.
        return Resolution(spec, problem=Problem.AMBIGUOUS, targets=_labels(targets))
    running = [t for t in targets if t.has_address]
    if not running:
        return Resolution(spec, problem=Problem.NOT_RUNNING)
    if mine is None:
        mine = _own_networks(snapshot, dependent)
    lines: list[HostLine] = []
    names: list[str] = []
    network = ""
    problem: Problem | None = None
    for target in running:
        if wait_health and target.health and target.health != HEALTHY:
            problem = Problem.WAITING_HEALTH
            continue
        owner = netns_owner(snapshot, target)
        if owner is None or not owner.has_address:
            problem = Problem.NOT_RUNNING if owner is not None else Problem.MISSING
            continue
        if owner.network_mode == "host":
            problem = Problem.HOST_NETWORK
            continue
        if not owner.endpoints:
            problem = Problem.DETACHED
            continue
        chosen = choose_endpoint(owner.endpoints, mine, spec.network)
        if isinstance(chosen, Problem):
            problem = chosen
            continue
        lines += _lines_for(chosen, spec.alias, target.name, domain)
        names.append(_label(target))
        network = chosen.network
    if not lines:
        return Resolution(spec, problem=problem or Problem.NO_ADDRESS)
    return Resolution(spec, tuple(lines), targets=tuple(names), network=network)


def _targets(snapshot: Snapshot, project: str | None, spec: LinkSpec) -> list[Container] | Problem:
    """A same-project compose service wins over a container name; other projects never.
    A bare name that is not here is looked up among other nodes' published records."""
    target = spec.target
    if spec.node is not None and spec.node != snapshot.node:
        if snapshot.node is None:
            return Problem.NO_CLUSTER
        found = snapshot.remote.get((spec.node, target))
        return [found] if found is not None else Problem.NOT_PUBLISHED
    if project is not None and spec.node is None:
        replicas = snapshot.by_service.get((project, target))
        if replicas:
            return replicas
    found = snapshot.by_name.get(target)
    if found is not None:
        return [found]
    if spec.node is None and snapshot.node is not None:
        published = snapshot.remote_by_name.get(target)
        if published:
            return published if _bare_may_leave(snapshot, project, target) \
                else Problem.BARE_REMOTE
    return Problem.MISSING


def _bare_may_leave(snapshot: Snapshot, project: str | None, target: str) -> bool:
    """Whether a bare name that no local container holds may go to another node.

    Any node's container creator can publish any name, so a bare name that falls through
    can be taken over from elsewhere. Only with the option on, and never for a compose
    service name: a dependent of a project may name a service scaled to 0 (which the
    engine no longer shows), and a service of any project here is a local name."""
    if not snapshot.bare_names or project is not None:
        return False
    return not any(service == target for _, service in snapshot.by_service)


def _label(container: Container) -> str:
    return f"{container.node}/{container.name}" if container.node else container.name


def _labels(containers: Iterable[Container]) -> tuple[str, ...]:
    return tuple(_label(c) for c in containers)


def plan(snapshot: Snapshot, dependent: Container, label: str,
         health: str = "ignore", domain: str = "") -> DependentPlan | None:
    """`health`: `links.health`, `domain`: `links.domain`; the dependent's HEALTH_LABEL and
    DOMAIN_LABEL may override them."""
    value = dependent.labels.get(label)
    if value is None:
        return None
    specs, errors = parsed_label(value)
    wait, health_error = health_wait(dependent.labels.get(HEALTH_LABEL), health)
    suffix, domain_error = link_domain(dependent.labels.get(DOMAIN_LABEL), domain)
    owner = netns_owner(snapshot, dependent)
    mine = network_keys(owner.endpoints) if owner is not None else frozenset()
    links = tuple(resolve(snapshot, dependent, s, mine, wait, suffix) for s in specs)
    unmanaged = None
    if dependent.hosts_mounted or (owner is not None and owner.hosts_mounted):
        unmanaged = UNMANAGED_MOUNT  # a sidecar of such an owner reads the owner's mount
    elif owner is None:
        unmanaged = UNMANAGED_NO_OWNER
    return DependentPlan(dependent, links, errors, unmanaged,
                         owner.id if owner is not None else dependent.id,
                         owner.name if owner is not None else dependent.name,
                         wait, health_error, domain_error)


def _own_networks(snapshot: Snapshot, dependent: Container) -> frozenset[str]:
    own = netns_owner(snapshot, dependent)
    return network_keys(own.endpoints) if own is not None else frozenset()


@dataclass(frozen=True, slots=True)
class FilePlan:
    """One hosts file and every dependent that reads it: its owner (if a dependent) first,
    then the sidecars that share its network namespace, by name. The file holds one block,
    the union of their lines, each line once."""

    owner: str  # the container id whose <containers_root>/<id>/hosts this is
    plans: tuple[DependentPlan, ...]
    owner_name: str = ""

    def lines(self, keep_stopped: bool = False,
              kept: Mapping[str, Mapping[str, tuple[HostLine, ...]]] | None = None
              ) -> list[HostLine]:
        out: dict[HostLine, None] = {}
        for found in self.plans:
            mine = kept.get(found.dependent.id) if kept else None
            out.update(dict.fromkeys(found.lines(keep_stopped, mine)))
        return list(out)

    @property
    def links(self) -> tuple[tuple[Resolution, ...], ...]:
        return tuple(found.links for found in self.plans)

    @property
    def aliases(self) -> frozenset[str]:
        return frozenset(link.spec.alias for found in self.plans for link in found.links)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(found.dependent.name for found in self.plans)


def files_of(snapshot: Snapshot, plans: Iterable[DependentPlan]) -> dict[str, FilePlan]:
    """The managed plans grouped by the hosts file they read."""
    grouped: dict[str, list[DependentPlan]] = defaultdict(list)
    for found in plans:
        if found.unmanaged is None:
            grouped[found.hosts_file].append(found)
    return {owner: file_plan(snapshot, owner, group) for owner, group in grouped.items()}


def file_plan(snapshot: Snapshot, owner: str, group: list[DependentPlan]) -> FilePlan:
    """One file's plan from the managed plans of the dependents that read it."""
    if len(group) > 1:
        group.sort(key=lambda p: (p.dependent.id != owner, p.dependent.name))
    found = snapshot.by_id.get(owner)
    return FilePlan(owner, tuple(group), found.name if found else owner[:12])


def waiting_dependents(
    snapshot: Snapshot, plans: Iterable[DependentPlan]
) -> dict[str, list[DependentPlan]]:
    """For each container that links wait for because it is not running, the plans of the
    dependents that wait for it."""
    waiting: dict[str, list[DependentPlan]] = {}
    for found in plans:
        for link in found.links:
            if link.problem is Problem.NOT_RUNNING:
                targets = _targets(snapshot, found.dependent.compose_project, link.spec)
                if isinstance(targets, Problem):
                    continue
                for t in targets:
                    if not t.has_address:
                        dependents = waiting.setdefault(t.id, [])
                        if not dependents or dependents[-1] is not found:
                            dependents.append(found)
    return waiting


def replan_started(
    snapshot: Snapshot, target: Container, endpoints: tuple[Endpoint, ...],
    dependents: Iterable[DependentPlan], label: str, health: str = "ignore",
    domain: str = "",
) -> list[DependentPlan]:
    """The dependents' plans once this stopped target runs with these endpoints, all
    else as in the snapshot: a start costs the plans of its dependents, not of the fleet.
    A target with a healthcheck starts as STARTING (the engine resets it on every start)."""
    started = snapshot.replaced(replace(target, state="running", endpoints=endpoints,
                                        health=STARTING if target.health else ""))
    out = []
    for old in dependents:
        new = plan(started, old.dependent, label, health, domain)
        if new is not None:
            out.append(new)
    return out


def plan_all(snapshot: Snapshot, label: str, live_only: bool = True,
             health: str = "ignore", domain: str = "") -> dict[str, DependentPlan]:
    """Plans for every (live) dependent, by container id."""
    plans = {}
    for container in snapshot:
        if (container.is_live or not live_only) and label in container.labels:
            found = plan(snapshot, container, label, health, domain)
            if found is not None:
                plans[container.id] = found
    return plans
