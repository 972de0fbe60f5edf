"""Published records: what this node tells the cluster about its containers, and what the
other nodes' records say. Pure: the cluster edge moves the bytes, this decides them.

A record lives at `<prefix>/nodes/<node>/containers/<name>` and holds JSON:

    {"id": "<64 hex>", "name": "db", "node": "b", "network": "macvlan0",
     "ipv4": "192.0.2.7", "ipv6": "", "networks": ["backend", "macvlan0"]}

Other nodes' records are untrusted input like labels and hosts files: only a record whose
every part is a plain name or a valid address becomes a target.

Imports: core.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hostsyncd.core.graph import Snapshot, netns_owner
from hostsyncd.core.links import is_docker_name
from hostsyncd.core.model import Container, Endpoint

# A record is a few hundred bytes; anything much larger is not one of ours.
MAX_RECORD_BYTES = 4096
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class RecordError:
    key: str
    reason: str

    def __str__(self) -> str:
        shown = self.key if len(self.key) <= 120 else self.key[:117] + "..."
        return f"ignored cluster record {shown!r}: {self.reason}"


def nodes_prefix(prefix: str) -> str:
    return f"{prefix}/nodes/"


def record_key(prefix: str, node: str, name: str) -> str:
    return f"{prefix}/nodes/{node}/containers/{name}"


def owner_key(prefix: str, node: str) -> str:
    """The key that claims a node name: held on the claiming daemon's lease."""
    return f"{prefix}/nodes/{node}/owner"


def published(
    snapshot: Snapshot, label: str, node: str, advertise_network: str = ""
) -> tuple[dict[str, bytes], dict[str, str]]:
    """This node's records by key suffix `<name>`, and why labelled containers are not
    published (by container id)."""
    records: dict[str, bytes] = {}
    problems: dict[str, str] = {}
    for container in snapshot:
        value = container.labels.get(label)
        if value is None:
            continue
        wanted = value.strip().lower()
        if wanted not in _TRUE:
            if wanted not in _FALSE:
                problems[container.id] = f"label {label}={value[:40]!r}: expected true or false"
            continue
        if not container.has_address:
            continue
        found = _advertised(snapshot, container, advertise_network)
        if isinstance(found, str):
            problems[container.id] = f"not published: {found}"
            continue
        owner, endpoint = found
        if not is_docker_name(container.name) or (
                endpoint.network and not is_docker_name(endpoint.network)):
            # Peers would refuse the record: say so here, where someone can act on it.
            problems[container.id] = ("not published: its name or network name is not "
                                      "plain (letters, digits, '_', '.', '-'; no '..')")
            continue
        unusable = next((f"{ip} is {why}" for ip in (endpoint.ipv4, endpoint.ipv6) if ip
                         for why in [_unusable_text(ip)] if why), "")
        if unusable:
            problems[container.id] = f"not published: peers refuse its address: {unusable}"
            continue
        records[container.name] = _encode(container, owner, node, endpoint)
    return records, problems


def _unusable_text(text: str) -> str:
    try:
        return unusable_address(ipaddress.ip_address(text))
    except ValueError:
        return "not an IP address"


def _advertised(
    snapshot: Snapshot, container: Container, network: str
) -> tuple[Container, Endpoint] | str:
    """The container that owns the network namespace, and the endpoint to publish."""
    owner = netns_owner(snapshot, container)
    if owner is None:
        return "the container whose network it shares is gone"
    if owner.network_mode == "host":
        return "it uses the host's network and has no address of its own"
    usable = sorted((ep for ep in owner.endpoints if ep.ipv4 or ep.ipv6),
                    key=lambda ep: ep.network)
    if network:
        for ep in usable:
            if network in (ep.network, ep.network_id):
                return owner, ep
        return f"no address on advertise_network {network!r}"
    return (owner, usable[0]) if usable else "no address on any network"


def _encode(container: Container, owner: Container, node: str, endpoint: Endpoint) -> bytes:
    data = {
        "id": container.id,
        "name": container.name,
        "node": node,
        "network": endpoint.network,
        "ipv4": endpoint.ipv4,
        "ipv6": endpoint.ipv6,
        "networks": sorted(ep.network for ep in owner.endpoints),
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def parse_record(prefix: str, key: str, value: bytes) -> Container | RecordError:
    """A remote record as a running container of its node, or why it is not usable."""
    def bad(reason: str) -> RecordError:
        return RecordError(key, reason)

    rest = key.removeprefix(nodes_prefix(prefix))
    parts = rest.split("/")
    if rest == key or len(parts) != 3 or parts[1] != "containers":
        return bad("not a <prefix>/nodes/<node>/containers/<name> key")
    node, _, name = parts
    if not is_docker_name(node) or not is_docker_name(name):
        return bad("node or container name is not a plain name")
    if len(value) > MAX_RECORD_BYTES:
        return bad(f"value longer than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return bad("value is not JSON")
    if not isinstance(data, dict):
        return bad("value is not a JSON object")
    if data.get("node") != node or data.get("name") != name:
        return bad("node or name in the value does not match the key")
    found = _fields(data)
    if isinstance(found, str):
        return bad(found)
    cid, network, ipv4, ipv6 = found
    return Container(
        id=cid or f"{node}/{name}",
        name=name,
        state="running",
        labels=MappingProxyType({}),
        endpoints=(Endpoint(network, "", ipv4, ipv6),),
        node=node,
    )


def _fields(data: dict[str, Any]) -> tuple[str, str, str, str] | str:
    cid, network = data.get("id", ""), data.get("network", "")
    ipv4, ipv6 = data.get("ipv4", ""), data.get("ipv6", "")
    if not all(isinstance(v, str) for v in (cid, network, ipv4, ipv6)):
        return "id, network, ipv4 and ipv6 must be strings"
    if cid and not _HEX_ID.fullmatch(cid):
        return "id is not 64 hex digits"
    if network and not is_docker_name(network):
        return "network is not a plain name"
    if not ipv4 and not ipv6:
        return "no address"
    for field, text, kind in (("ipv4", ipv4, ipaddress.IPv4Address),
                              ("ipv6", ipv6, ipaddress.IPv6Address)):
        if not text:
            continue
        address = _address(text, kind)
        if address is None:
            return f"{field} is not an {kind.__name__.removesuffix('Address')} address"
        unusable = unusable_address(address)
        if unusable:
            # No address in the text: the same problem is said once per node and name,
            # not once more for every address a hostile node cycles through.
            return f"{field} is {unusable}"
    return cid, network, ipv4, ipv6


def _address(
    text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # No zone ids ("fe80::1%eth0"): ipaddress accepts anything after the '%'.
    if "%" in text or not text.isascii():
        return None
    try:
        return kind(text)
    except ValueError:
        return None


def unusable_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why another host's container can never be at this address ("" if it can be).

    A record is a claim by another node. An address that means "this host" (unspecified,
    loopback), "everyone" (multicast, broadcast) or "this link" (link-local, such as the
    cloud metadata service at 169.254.169.254) would send a dependent's traffic somewhere
    on its own host or segment, never to the publishing node's container."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_unspecified:
            return "an unspecified address"
        if address.is_loopback:
            return "a loopback address"
        embedded = address.ipv4_mapped
        if embedded is None and int(address) >> 32 == 0:
            # IPv4-compatible (::a.b.c.d, deprecated): stacks that still map it reach
            # the IPv4 address inside.
            embedded = ipaddress.IPv4Address(int(address))
        if embedded is not None:
            inner = unusable_address(embedded)
            return f"{inner} inside an IPv6 address" if inner else ""
    elif address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address == _BROADCAST:
        return "the broadcast address"
    if address.is_link_local:
        return "a link-local address"
    return ""


# 0.0.0.0/8: "this host on this network", a source address only (RFC 1122).
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
