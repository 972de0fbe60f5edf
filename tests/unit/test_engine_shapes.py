"""Docker Engine API shapes to core records: the pure half of hostsyncd.engine."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hostsyncd.core.model import Container, Endpoint
from hostsyncd.engine import EngineEvent, container_from_list, event_from_raw

CID = "a1" * 32
NET_ID = "b2" * 32
NET2_ID = "c3" * 32


def listed(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "Id": CID,
        "Names": ["/db"],
        "Image": "mysql:8",
        "State": "running",
        "Status": "Up 2 minutes",
        "Labels": {"hostsyncd.links": "cache:c", "com.docker.compose.project": "p"},
        "HostConfig": {"NetworkMode": "backend"},
        "NetworkSettings": {
            "Networks": {
                "frontend": {
                    "NetworkID": NET2_ID,
                    "IPAddress": "10.1.0.2",
                    "GlobalIPv6Address": "",
                    "IPPrefixLen": 16,
                },
                "backend": {
                    "NetworkID": NET_ID,
                    "IPAddress": "10.2.0.2",
                    "GlobalIPv6Address": "fd00::2",
                    "LinkLocalIPv6Address": "fe80::1",
                },
            }
        },
    }
    raw.update(overrides)
    return raw


def test_full_list_entry() -> None:
    c = container_from_list(listed())
    assert isinstance(c, Container)
    assert c.id == CID
    assert c.name == "db"
    assert c.state == "running"
    assert dict(c.labels) == {"hostsyncd.links": "cache:c", "com.docker.compose.project": "p"}
    assert c.compose_project == "p"
    assert c.network_mode == "backend"
    assert c.endpoints == (
        Endpoint("backend", NET_ID, "10.2.0.2", "fd00::2"),
        Endpoint("frontend", NET2_ID, "10.1.0.2", ""),
    )
    # the link-local address is never used
    assert all("fe80" not in ep.ipv6 for ep in c.endpoints)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["/web/db", "/db"], "db"),
        (["/db", "/web/db"], "db"),
        (["/a/db", "/b/db", "/db"], "db"),
        (["/db"], "db"),
        (["db"], "db"),
        (["/web/db"], "web/db"),
    ],
)
def test_name_is_the_one_without_an_inner_slash(names: list[str], expected: str) -> None:
    assert container_from_list(listed(Names=names)).name == expected


@pytest.mark.parametrize("names", [None, []])
def test_no_names_falls_back_to_short_id(names: list[str] | None) -> None:
    assert container_from_list(listed(Names=names)).name == CID[:12]


@pytest.mark.parametrize(
    ("names", "name", "others"),
    [
        (["/db"], "db", ()),
        (["/web/db", "/db"], "db", ()),
        # Mid-rename the engine lists both names, sorted, whichever is the new one.
        (["/db", "/db-away"], "db", ("db-away",)),
        (["/web/db", "/db", "/db-away", "/web/db-away"], "db", ("db-away",)),
        (["/a", "/b", "/c"], "a", ("b", "c")),
        (["/db", "/db"], "db", ()),
    ],
)
def test_every_own_name_of_a_list_entry_is_kept(names: list[str], name: str,
                                                others: tuple[str, ...]) -> None:
    c = container_from_list(listed(Names=names))
    assert (c.name, c.other_names) == (name, others)


def test_a_list_entry_with_two_names_is_otherwise_read_as_usual() -> None:
    mid_rename = container_from_list(listed(Names=["/db", "/db-away"]))
    usual = container_from_list(listed(Names=["/db"]))
    assert mid_rename == replace(usual, other_names=("db-away",))


def test_host_and_container_network_modes() -> None:
    assert container_from_list(listed(HostConfig={"NetworkMode": "host"})).network_mode == "host"
    mode = f"container:{'d4' * 32}"
    assert container_from_list(listed(HostConfig={"NetworkMode": mode})).network_mode == mode


@pytest.mark.parametrize(
    "missing",
    [
        {"Labels": None},
        {"HostConfig": None},
        {"HostConfig": {}},
        {"NetworkSettings": None},
        {"NetworkSettings": {}},
        {"NetworkSettings": {"Networks": None}},
        {"NetworkSettings": {"Networks": {}}},
        {"State": None},
    ],
)
def test_missing_or_none_fields_are_tolerated(missing: dict[str, Any]) -> None:
    c = container_from_list(listed(**missing))
    assert c.id == CID
    assert c.name == "db"


def test_bare_minimum_entry() -> None:
    c = container_from_list({"Id": CID})
    assert c == Container(id=CID, name=CID[:12], state="")
    assert c.endpoints == ()
    assert dict(c.labels) == {}
    assert c.network_mode == ""


def test_network_with_missing_or_none_fields() -> None:
    c = container_from_list(
        listed(
            NetworkSettings={
                "Networks": {
                    "n1": {"NetworkID": None, "IPAddress": None, "GlobalIPv6Address": None},
                    "n2": {},
                    "n3": None,
                }
            }
        )
    )
    assert c.endpoints == (Endpoint("n1", "", "", ""), Endpoint("n2", "", "", ""))


def test_exited_container_keeps_state_but_has_no_address() -> None:
    c = container_from_list(
        listed(
            State="exited",
            NetworkSettings={"Networks": {"n": {"NetworkID": NET_ID, "IPAddress": ""}}},
        )
    )
    assert c.state == "exited"
    assert not c.has_address
    assert c.endpoints == (Endpoint("n", NET_ID, "", ""),)


def test_labels_are_read_only() -> None:
    c = container_from_list(listed())
    with pytest.raises(TypeError):
        c.labels["x"] = "y"  # type: ignore[index]


# --- events -----------------------------------------------------------------------------


def test_container_event() -> None:
    ev = event_from_raw(
        {
            "Type": "container",
            "Action": "start",
            "Actor": {"ID": CID, "Attributes": {"name": "db", "image": "mysql"}},
            "scope": "local",
            "time": 1700000000,
            "timeNano": 1700000000123456789,
        }
    )
    assert ev == EngineEvent(
        "container", "start", CID, "", ev.attributes if ev else {}, 1700000000123456789
    )
    assert ev is not None
    assert ev.container_name == "db"
    assert dict(ev.attributes) == {"name": "db", "image": "mysql"}


def test_rename_event_gives_the_old_name_without_its_slash() -> None:
    ev = event_from_raw({"Type": "container", "Action": "rename",
                         "Actor": {"ID": CID, "Attributes": {"name": "db2", "oldName": "/db"}}})
    assert ev is not None
    assert (ev.container_name, ev.old_name) == ("db2", "db")


@pytest.mark.parametrize(
    "raw",
    [
        {"Type": "container", "Action": "rename",
         "Actor": {"ID": CID, "Attributes": {"name": "db2"}}},
        {"Type": "container", "Action": "start",
         "Actor": {"ID": CID, "Attributes": {"name": "db", "oldName": "/x"}}},
        {"Type": "network", "Action": "connect",
         "Actor": {"ID": NET_ID, "Attributes": {"container": CID, "oldName": "/x"}}},
    ],
)
def test_only_a_rename_event_has_an_old_name(raw: dict[str, Any]) -> None:
    ev = event_from_raw(raw)
    assert ev is not None
    assert ev.old_name == ""


def test_network_event() -> None:
    ev = event_from_raw(
        {
            "Type": "network",
            "Action": "connect",
            "Actor": {"ID": NET_ID, "Attributes": {"container": CID, "name": "backend",
                                                   "type": "bridge"}},
            "timeNano": 5,
        }
    )
    assert ev is not None
    assert ev.type == "network"
    assert ev.action == "connect"
    assert ev.container_id == CID
    assert ev.network_id == NET_ID
    assert ev.time_nano == 5
    # a network event's "name" is the network's, not the container's
    assert ev.container_name == ""


def test_network_disconnect_event() -> None:
    ev = event_from_raw(
        {"Type": "network", "Action": "disconnect",
         "Actor": {"ID": NET_ID, "Attributes": {"container": CID}}}
    )
    assert ev is not None
    assert (ev.type, ev.action, ev.container_id, ev.network_id) == (
        "network", "disconnect", CID, NET_ID
    )


@pytest.mark.parametrize(
    ("action", "verb"),
    [
        ("exec_start: sh -c 'echo hi'", "exec_start"),
        ("health_status: healthy", "health_status"),
        ("exec_create: /bin/true", "exec_create"),
        ("die", "die"),
        ("", ""),
    ],
)
def test_action_colon_suffix_is_dropped(action: str, verb: str) -> None:
    ev = event_from_raw({"Type": "container", "Action": action, "Actor": {"ID": CID}})
    assert ev is not None
    assert ev.action == verb


@pytest.mark.parametrize("kind", ["image", "volume", "daemon", "plugin", None, ""])
def test_other_event_types_are_ignored(kind: str | None) -> None:
    assert event_from_raw({"Type": kind, "Action": "create", "Actor": {"ID": "x"}}) is None


def test_event_with_missing_parts() -> None:
    ev = event_from_raw({"Type": "container", "Action": "destroy"})
    assert ev is not None
    assert ev.container_id == ""
    assert ev.time_nano == 0
    assert ev.container_name == ""
    ev = event_from_raw({"Type": "network", "Action": "connect", "Actor": {"Attributes": None}})
    assert ev is not None
    assert (ev.container_id, ev.network_id) == ("", "")


# --- API 1.52 (Docker 29) ----------------------------------------------------------------
# Docker 29 serves API 1.44 and newer only. From 1.52 its events have no `status`, `id` or
# `from`, and its list has no top-level `NetworkSettings.IPAddress` (nor the other legacy
# top-level address fields). Payloads below are shaped as 1.52 sends them; the "poisoned"
# ones carry the dropped fields with values that contradict the ones that remain, so a
# reader that still looked at them would get the wrong answer here.


def listed_152(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "Id": CID,
        "Names": ["/db"],
        "Image": "mysql:8",
        "ImageID": "sha256:" + "e5" * 32,
        "Command": "sleep 3600",
        "Created": 1700000000,
        "Ports": [],
        "Labels": {"hostsyncd.links": "cache:c"},
        "State": "running",
        "Status": "Up 2 minutes",
        "HostConfig": {"NetworkMode": "backend", "Annotations": None},
        "NetworkSettings": {
            "Networks": {
                "backend": {
                    "IPAMConfig": None,
                    "Links": None,
                    "Aliases": None,
                    "MacAddress": "02:42:0a:02:00:02",
                    "DriverOpts": None,
                    "GwPriority": 0,
                    "NetworkID": NET_ID,
                    "EndpointID": "f6" * 32,
                    "Gateway": "10.2.0.1",
                    "IPAddress": "10.2.0.2",
                    "IPPrefixLen": 24,
                    "IPv6Gateway": "fd00::1",
                    "GlobalIPv6Address": "fd00::2",
                    "GlobalIPv6PrefixLen": 64,
                    "DNSNames": None,
                }
            }
        },
        "Mounts": [],
    }
    raw.update(overrides)
    return raw


def test_api_152_list_entry_without_top_level_address() -> None:
    raw = listed_152()
    assert "IPAddress" not in raw["NetworkSettings"]
    c = container_from_list(raw)
    assert (c.id, c.name, c.state, c.network_mode) == (CID, "db", "running", "backend")
    assert c.endpoints == (Endpoint("backend", NET_ID, "10.2.0.2", "fd00::2"),)
    assert c.has_address


def test_api_152_addresses_come_from_the_networks_only() -> None:
    # Older engines also had top-level fields (the default bridge's address): poisoned here.
    raw = listed_152()
    raw["NetworkSettings"].update(
        {"IPAddress": "10.9.9.9", "GlobalIPv6Address": "fd00::99", "Gateway": "10.9.9.1",
         "Bridge": "", "EndpointID": "x"}
    )
    c = container_from_list(raw)
    assert c.endpoints == (Endpoint("backend", NET_ID, "10.2.0.2", "fd00::2"),)
    assert "10.9.9.9" not in repr(c)


def test_api_152_stopped_container_has_no_address_even_with_a_top_level_one() -> None:
    raw = listed_152(State="exited")
    raw["NetworkSettings"]["IPAddress"] = "10.9.9.9"
    raw["NetworkSettings"]["Networks"]["backend"].update(IPAddress="", GlobalIPv6Address="")
    c = container_from_list(raw)
    assert not c.has_address


EVENTS_152 = [
    # (1.52 event, type, action, container id, network id, name)
    ({"Type": "container", "Action": "start",
      "Actor": {"ID": CID, "Attributes": {"name": "db", "image": "mysql:8",
                                          "hostsyncd.links": "cache"}},
      "scope": "local", "time": 1700000000, "timeNano": 1700000000000000001},
     "container", "start", CID, "", "db"),
    ({"Type": "container", "Action": "rename",
      "Actor": {"ID": CID, "Attributes": {"name": "db2", "oldName": "/db"}},
      "scope": "local", "time": 1700000000, "timeNano": 2},
     "container", "rename", CID, "", "db2"),
    ({"Type": "container", "Action": "destroy",
      "Actor": {"ID": CID, "Attributes": {"name": "db", "image": "mysql:8"}},
      "scope": "local", "time": 1700000000, "timeNano": 3},
     "container", "destroy", CID, "", "db"),
    ({"Type": "network", "Action": "connect",
      "Actor": {"ID": NET_ID, "Attributes": {"container": CID, "name": "backend",
                                             "type": "bridge"}},
      "scope": "local", "time": 1700000000, "timeNano": 4},
     "network", "connect", CID, NET_ID, ""),
    ({"Type": "network", "Action": "disconnect",
      "Actor": {"ID": NET_ID, "Attributes": {"container": CID, "name": "backend",
                                             "type": "bridge"}},
      "scope": "local", "time": 1700000000, "timeNano": 5},
     "network", "disconnect", CID, NET_ID, ""),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "kind", "action", "cid", "net_id", "name"), EVENTS_152,
                         ids=[e[0]["Action"] for e in EVENTS_152])  # fmt: skip
def test_api_152_events_without_status_id_from(
    raw: dict[str, Any], kind: str, action: str, cid: str, net_id: str, name: str
) -> None:
    assert not {"status", "id", "from"} & raw.keys()
    ev = event_from_raw(raw)
    assert ev is not None
    assert (ev.type, ev.action, ev.container_id, ev.network_id, ev.container_name) == (
        kind, action, cid, net_id, name
    )
    assert ev.time_nano == raw["timeNano"]


@pytest.mark.parametrize(("raw", "kind", "action", "cid", "net_id", "name"), EVENTS_152,
                         ids=[e[0]["Action"] for e in EVENTS_152])  # fmt: skip
def test_legacy_event_fields_are_never_read(
    raw: dict[str, Any], kind: str, action: str, cid: str, net_id: str, name: str
) -> None:
    # Before 1.52 a container event also had status (= Action), id (= Actor.ID) and from
    # (= the image). Poisoned: if any of them were read, the result would differ.
    poisoned = {**raw, "status": "pause", "id": "d4" * 32, "from": "evil:latest"}
    assert event_from_raw(poisoned) == event_from_raw(raw)
    ev = event_from_raw(poisoned)
    assert ev is not None
    assert (ev.action, ev.container_id) == (action, cid)


def test_event_without_action_is_not_guessed_from_status() -> None:
    ev = event_from_raw({"Type": "container", "status": "start", "id": CID, "Actor": {}})
    assert ev is not None
    assert (ev.action, ev.container_id) == ("", "")


# -- Podman (4.3.1, measured) ----------------------------------------------------------------


def test_podman_is_told_from_its_version() -> None:
    from hostsyncd.engine import is_podman

    podman = {"Platform": {"Name": "linux/amd64/debian-12"},
              "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}],
              "Version": "4.3.1", "ApiVersion": "1.41"}
    docker = {"Platform": {"Name": "Docker Engine - Community"},
              "Components": [{"Name": "Engine"}, {"Name": "containerd"}, {"Name": "runc"}],
              "Version": "20.10.24"}
    assert is_podman(podman)
    assert not is_podman(docker)
    assert not is_podman({})


def test_a_podman_network_event_names_the_container_by_actor_id() -> None:
    from hostsyncd.engine import podman_event_from_raw

    raw = {"Type": "network", "Action": "connect", "status": "connect",
           "Actor": {"ID": CID, "Attributes": {"name": "t1", "podId": ""}}}
    ev = podman_event_from_raw(raw)
    assert ev is not None
    assert (ev.type, ev.action, ev.container_id, ev.network_id) == \
        ("network", "connect", CID, "")
    # The same shape read as Docker's would name no container at all.
    docker_reading = event_from_raw(raw)
    assert docker_reading is not None and docker_reading.container_id == ""


def test_a_podman_remove_is_a_destroy() -> None:
    from hostsyncd.engine import podman_event_from_raw

    ev = podman_event_from_raw({"Type": "container", "Action": "remove",
                                "Actor": {"ID": CID, "Attributes": {"name": "t1"}}})
    assert ev is not None and (ev.action, ev.container_id) == ("destroy", CID)
