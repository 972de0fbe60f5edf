"""The only module that knows Docker Engine API shapes.

It turns list responses, network inspections and events into core records. It works with
every engine from API 1.41 up: it reads only `Action`, `Actor` and
`NetworkSettings.Networks`, which newer engines keep, never the fields 1.52 dropped.

Imports: core; docker, requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import docker
import docker.errors
import requests.exceptions

from hostsyncd.core.model import HEALTH_STATES, Container, Endpoint

# The actions that can change who has which address, or (health_status) whether a link
# waiting for health gives a line. Asking the engine to filter keeps exec chatter off the
# stream: a healthcheck runs an exec_create, exec_start and exec_die every interval. The
# engine matches `health_status` by prefix (moby #25798), so it passes "health_status:
# healthy" and the like; none of these names is a prefix of an exec_* action.
CONTAINER_ACTIONS = ("create", "start", "die", "destroy", "rename", "pause", "unpause",
                     "health_status")
NETWORK_ACTIONS = ("connect", "disconnect")
# Podman's names for what Docker calls destroy (`remove`) and the steps of its start and
# stop (`init`, `cleanup`): measured on 4.3.1, whose compat API matches filters by name.
PODMAN_ACTIONS = ("remove", "init", "cleanup", "restart")

# What every call to an engine that is away or broken can raise.
EngineUnavailable = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    OSError,
)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    type: str  # "container" or "network"
    action: str
    container_id: str
    network_id: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    time_nano: int = 0
    # A network connect's endpoint, as the network reported it when the event was read
    # (the list shows it about 200 ms later), with the container's name; None if the
    # network could not say (the decider then lists).
    endpoint: Endpoint | None = None
    member_name: str = ""
    # A `health_status` event's status (one of HEALTH_STATES), else "".
    health: str = ""
    # time.monotonic() when it was read off the stream: where propagation is timed from
    # (not time_nano, the engine's clock, which may be another host's).
    received: float = 0.0

    @property
    def container_name(self) -> str:
        return self.attributes.get("name", "") if self.type == "container" else ""

    @property
    def old_name(self) -> str:
        """A rename's name before it (the engine sends it with its leading slash)."""
        if self.type != "container" or self.action != "rename":
            return ""
        return self.attributes.get("oldName", "").lstrip("/")


class Engine:
    """A connection to one engine. Not thread-safe: give each thread its own."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._client: docker.APIClient | None = None
        self.calls = 0  # API calls made, for benchmarks and status
        self._podman: bool | None = None  # asked once per connection

    @property
    def client(self) -> docker.APIClient:
        if self._client is None:
            # "auto" asks the engine for its API version, so one build of hostsyncd works
            # against old and new engines alike.
            self._client = docker.APIClient(base_url=self.url, version="auto", timeout=self.timeout)
            self.calls += 1
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._podman = None  # the next connection may be to another engine

    def version(self) -> str:
        self.calls += 1
        raw = self.client.version()
        self._podman = is_podman(raw)
        version = str(raw.get("Version", "?"))
        return f"podman {version}" if self._podman else version

    @property
    def podman(self) -> bool:
        """Whether the engine is Podman's Docker-compatible service (from its version)."""
        if self._podman is None:
            self.version()
        return bool(self._podman)

    def hosts_path(self, container_id: str) -> tuple[str, str] | None:
        """(HostsPath, HostConfig.NetworkMode) as the engine's inspect says, or None if
        the container is gone. Podman keeps the file under its own storage, not at
        `<containers_root>/<id>/hosts`, and its list gives no NetworkMode: only the
        inspect tells a container sharing another's network (and hosts file)."""
        self.calls += 1
        try:
            raw = self.client.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        path = str(raw.get("HostsPath") or "")
        mode = str((raw.get("HostConfig") or {}).get("NetworkMode") or "")
        return (path, mode) if path else None

    def list_containers(self, ids: Collection[str] | None = None) -> list[Container]:
        """Every container with its labels, state and addresses, in one API call; with
        `ids`, those alone (the engine's `id` filter: a pattern, so it may give more)."""
        self.calls += 1
        filters = {"id": sorted(ids)} if ids else None
        return [container_from_list(raw)
                for raw in self.client.containers(all=True, filters=filters)]

    def has_healthcheck(self, container_id: str) -> bool:
        """Whether the container has a healthcheck: the list shows health only while a
        container runs, so a stopped one has to be inspected (once: it is fixed at create)."""
        self.calls += 1
        try:
            raw = self.client.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        return healthcheck_from_inspect(raw)

    def network_members(self, network_id: str) -> dict[str, tuple[str, Endpoint]]:
        """Every container on the network as the network sees it now: id -> (name,
        endpoint). The start fast path's word on an address; one call answers for every
        target on the network."""
        self.calls += 1
        try:
            raw = self.client.inspect_network(network_id)
        except docker.errors.NotFound:
            return {}
        return members_from_inspect(raw, network_id)

    def events(self) -> EventStream:
        """Subscribe now; iterate the result to read. Events before this call are not seen."""
        podman = self.podman
        self.calls += 1
        stream = self.client.events(
            decode=True,
            filters={
                "type": ["container", "network"],
                "event": [*CONTAINER_ACTIONS, *NETWORK_ACTIONS,
                          *(PODMAN_ACTIONS if podman else ())],
            },
        )
        return EventStream(stream, podman)


def is_podman(version: Mapping[str, Any]) -> bool:
    """Podman's compat `/version` names a component "Podman Engine"; Docker's are "Engine",
    "containerd", "runc"."""
    components = version.get("Components") or []
    names = [str(c.get("Name") or "") for c in components if isinstance(c, Mapping)]
    platform = str((version.get("Platform") or {}).get("Name") or "")
    return any("podman" in name.lower() for name in [*names, platform])


class EventStream:
    def __init__(self, stream: Any, podman: bool = False) -> None:
        self._stream = stream
        self._podman = podman

    def __iter__(self) -> Iterator[EngineEvent]:
        parse = podman_event_from_raw if self._podman else event_from_raw
        for raw in self._stream:
            event = parse(raw)
            if event is not None:
                yield replace(event, received=time.monotonic())

    def close(self) -> None:
        # Closing the response from another thread is what unblocks the reading thread;
        # a broken stream may fail to close in any way it likes.
        with contextlib.suppress(Exception):
            self._stream.close()


def container_from_list(raw: Mapping[str, Any]) -> Container:
    names = [str(n) for n in raw.get("Names") or []]
    # Legacy links add names like "/web/db"; the container's own name has one slash.
    own = [n for n in names if n.count("/") == 1]
    name = (own or names or [str(raw.get("Id", ""))[:12]])[0].lstrip("/")
    # Mid-rename the entry holds the old and the new own name, in no telling order: keep
    # the rest for the observed state, which knows from the rename event which is current.
    other_names = tuple(dict.fromkeys(n.lstrip("/") for n in own[1:] if n.lstrip("/") != name))
    networks = (raw.get("NetworkSettings") or {}).get("Networks") or {}
    endpoints = tuple(
        Endpoint(
            network=str(net),
            network_id=str(info.get("NetworkID") or ""),
            ipv4=str(info.get("IPAddress") or ""),
            ipv6=str(info.get("GlobalIPv6Address") or ""),
        )
        for net, info in sorted(networks.items())
        if isinstance(info, Mapping)
    )
    labels = raw.get("Labels") or {}
    mounts = raw.get("Mounts") or []
    state = str(raw.get("State") or "")
    return Container(
        id=str(raw.get("Id", "")),
        name=name,
        state=state,
        labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
        network_mode=str((raw.get("HostConfig") or {}).get("NetworkMode") or ""),
        endpoints=endpoints,
        hosts_mounted=any(isinstance(m, Mapping) and m.get("Destination") == "/etc/hosts"
                          for m in mounts if isinstance(mounts, list)),
        health=health_from_list(raw) if state == "running" else "",
        other_names=other_names,
    )


# What `Status` ends with for a running container with a healthcheck, on every engine from
# API 1.41 (20.10) to 1.51 (28.5), measured: "Up 2 seconds (health: starting)", "Up 2
# seconds (healthy)", "Up 3 seconds (unhealthy)". A stopped one's says nothing of health.
_STATUS_HEALTH = {"(health: starting)": "starting", "(healthy)": "healthy",
                  "(unhealthy)": "unhealthy"}


def health_from_list(raw: Mapping[str, Any]) -> str:
    """A running container's health from the list: API 1.52 and newer give `Health.Status`
    ("none" without a healthcheck); older ones only the human `Status` string."""
    health = raw.get("Health")
    if isinstance(health, Mapping):
        status = str(health.get("Status") or "")
        return status if status in HEALTH_STATES else ""
    text = str(raw.get("Status") or "")
    for suffix, status in _STATUS_HEALTH.items():
        if text.endswith(suffix):
            return status
    return ""


def healthcheck_from_inspect(raw: Mapping[str, Any]) -> bool:
    """`Config.Healthcheck` (the image's, merged in at create) with a test that is not
    ["NONE"] (`--no-healthcheck`)."""
    check = (raw.get("Config") or {}).get("Healthcheck") or {}
    test = check.get("Test") if isinstance(check, Mapping) else None
    return isinstance(test, list) and bool(test) and test[0] != "NONE"


def event_from_raw(raw: Mapping[str, Any]) -> EngineEvent | None:
    kind = raw.get("Type")
    actor = raw.get("Actor") or {}
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    # Actions may carry detail after a colon ("exec_start: sh"); the verb is enough here.
    action, _, detail = str(raw.get("Action") or "").partition(":")
    time_nano = int(raw.get("timeNano") or 0)
    if kind == "container":
        # "health_status: healthy": the status is the detail.
        health = detail.strip() if action == "health_status" else ""
        return EngineEvent(
            "container", action, str(actor.get("ID") or ""), "",
            MappingProxyType(attributes), time_nano,
            health=health if health in HEALTH_STATES else "",
        )
    if kind == "network":
        return EngineEvent(
            "network", action, attributes.get("container", ""), str(actor.get("ID") or ""),
            MappingProxyType(attributes), time_nano,
        )
    return None


def podman_event_from_raw(raw: Mapping[str, Any]) -> EngineEvent | None:
    """A Podman event, in Docker's terms. Measured on 4.3.1: a network event's `Actor.ID`
    is the *container's* id and carries no network id (podman#14993); the container is
    gone with `remove`, not `destroy`. Its `init`, `cleanup` and `restart` pass as they are
    (the decider lists on any action it has no rule for)."""
    event = event_from_raw(raw)
    if event is None:
        return None
    if event.type == "network":
        actor = raw.get("Actor") or {}
        # No network id: the decider lists instead of asking the network (which Podman's
        # compat API names, not ids, anyway).
        return replace(event, container_id=str(actor.get("ID") or ""), network_id="")
    if event.action == "remove":
        return replace(event, action="destroy")
    return event


def members_from_inspect(
    raw: Mapping[str, Any], network_id: str
) -> dict[str, tuple[str, Endpoint]]:
    """A network inspect's containers: id -> (name, endpoint)."""
    name = str(raw.get("Name") or "")
    net_id = str(raw.get("Id") or network_id)
    members = {}
    containers = raw.get("Containers") or {}
    for cid, entry in containers.items() if isinstance(containers, Mapping) else ():
        # Endpoints not yet joined to a sandbox show as "ep-<endpoint id>".
        if not isinstance(entry, Mapping) or str(cid).startswith("ep-"):
            continue
        endpoint = Endpoint(
            network=name,
            network_id=net_id,
            ipv4=_strip_prefix(entry.get("IPv4Address")),
            ipv6=_strip_prefix(entry.get("IPv6Address")),
        )
        members[str(cid)] = (str(entry.get("Name") or ""), endpoint)
    return members


class NetworkProbe:
    """The start fast path's one question to the engine: who is on this network now.

    On a unix socket, a plain HTTP/1.1 connection kept open: docker-py's requests stack
    costs about 1.4 ms more per call here (median 0.6 ms against 2.0 ms), and this call
    sits on the path where hostsyncd races Docker's own `--link` update. Any other URL
    (tcp, ssh) goes through docker-py. Not thread-safe: the fast path's thread owns it.
    """

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout
        self.socket_path = url.removeprefix("unix://") if url.startswith("unix://") else None
        self._conn: http.client.HTTPConnection | None = None
        self._engine: Engine | None = None if self.socket_path else Engine(url, timeout)

    def members(self, network_id: str) -> dict[str, tuple[str, Endpoint]]:
        if self._engine is not None:
            return self._engine.network_members(network_id)
        if not _PLAIN_ID.fullmatch(network_id):
            return {}
        if self._conn is None:
            self._conn = _UnixHTTPConnection(str(self.socket_path), self.timeout)
        try:
            self._conn.request("GET", f"/networks/{network_id}")
            response = self._conn.getresponse()
            body = response.read(_MAX_INSPECT_BYTES + 1)
        except (OSError, http.client.HTTPException):
            self.close()  # a fresh connection next time
            raise
        if response.status == 404:
            return {}
        if response.status != 200 or len(body) > _MAX_INSPECT_BYTES:
            self.close()
            raise OSError(f"network inspect answered {response.status}")
        raw = json.loads(body)
        return members_from_inspect(raw, network_id) if isinstance(raw, Mapping) else {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.close()


# Network ids are hex; nothing else goes into the request line.
_PLAIN_ID = re.compile(r"[0-9a-f]{1,64}")
# A network of tens of thousands of containers still answers in a few MB.
_MAX_INSPECT_BYTES = 64 << 20


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def _strip_prefix(address: object) -> str:
    return str(address or "").split("/", 1)[0]


class EventReader:
    """Reads the event stream on its own thread and hands everything to `emit`, in order.

    The engine drops subscribers that fall behind, so the reading thread only ever parses
    and enqueues. A second thread takes events in the order read and, for a network
    connect, asks the network for the endpoint before handing it on: the decider gets the
    address with the event and never calls the engine for it. The reader reconnects with
    exponential backoff capped at 2 s (a failed connect to a unix socket costs next to
    nothing, and the cap bounds how long after the engine is back the resync can start)
    and says so through `emit`, which is how the daemon knows to resync: events may have
    been missed.
    """

    def __init__(
        self,
        url: str,
        emit: Callable[[object], None],
        timeout: float = 10.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.emit = emit
        self.max_backoff = max_backoff
        self._stopping = threading.Event()
        self._stream: EventStream | None = None
        self._thread = threading.Thread(target=self._run, name="engine-events", daemon=True)
        # Everything read, in order, for the resolving thread; None ends it.
        self._read: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._resolver = threading.Thread(target=self._resolve, name="engine-resolve",
                                          daemon=True)
        self._probe = NetworkProbe(url, min(timeout, 2.0))

    def start(self) -> None:
        self._resolver.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._stream is not None:
            self._stream.close()
        self._thread.join(timeout=2)
        self._read.put(None)
        self._resolver.join(timeout=2)
        self._probe.close()

    def _resolve(self) -> None:
        while (item := self._read.get()) is not None:
            if isinstance(item, EngineEvent) and item.type == "network" \
                    and item.action == "connect":
                item = self._with_endpoint(item)
            self.emit(item)

    def _with_endpoint(self, event: EngineEvent) -> EngineEvent:
        try:
            found = self._probe.members(event.network_id).get(event.container_id)
        except (*EngineUnavailable, ValueError):
            return event  # the decider lists instead
        if found is None:
            return event
        return replace(event, member_name=found[0], endpoint=found[1])

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            engine = Engine(self.url, self.timeout)
            try:
                self._stream = engine.events()
                self._read.put(Connected(engine.version(), engine.podman))
                backoff = 0.1
                for event in self._stream:
                    self._read.put(event)
                reason = "event stream ended"
            except EngineUnavailable as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                engine.close()
            if self._stopping.is_set():
                return
            self._read.put(Disconnected(reason))
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)


@dataclass(frozen=True, slots=True)
class Connected:
    engine_version: str
    podman: bool = False


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str
