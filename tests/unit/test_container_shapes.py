"""A dependent that mounts its own /etc/hosts: seen in the list's Mounts, planned (for
status and graph) but never written."""

from __future__ import annotations

from dataclasses import replace

from builders import LINKS, ctr, net

from hostsyncd.core.graph import UNMANAGED_MOUNT, Snapshot, plan
from hostsyncd.engine import container_from_list

ID = "c" * 64


def _listed(mounts: object) -> dict:
    return {"Id": ID, "Names": ["/web"], "State": "running", "Labels": {LINKS: "db"},
            "Mounts": mounts, "NetworkSettings": {"Networks": {}}}


def test_a_mount_on_etc_hosts_is_seen_in_the_list() -> None:
    bind = {"Type": "bind", "Source": "/srv/myhosts", "Destination": "/etc/hosts"}
    other = {"Type": "volume", "Name": "v", "Destination": "/data"}
    assert container_from_list(_listed([other, bind])).hosts_mounted
    assert not container_from_list(_listed([other])).hosts_mounted
    assert not container_from_list(_listed([{"Destination": "/etc/hosts.d"}])).hosts_mounted
    for odd in (None, [], "x", [None, 7, "s"], {"Destination": "/etc/hosts"}):
        assert not container_from_list(_listed(odd)).hosts_mounted


def test_a_dependent_that_mounts_its_hosts_file_is_planned_but_unmanaged() -> None:
    db = ctr("db", net("n", "10.0.0.2"))
    web = ctr("web", net("n", "10.0.0.3"), links="db")
    mounted = replace(web, hosts_mounted=True)
    plain = plan(Snapshot([db, web]), web, LINKS)
    assert plain is not None and plain.unmanaged is None
    found = plan(Snapshot([db, mounted]), mounted, LINKS)
    assert found is not None
    assert found.unmanaged == UNMANAGED_MOUNT == "mounts its own /etc/hosts; not managed"
    assert found.links[0].resolved  # still resolved, for status and graph
