"""Which lines a dependent gets: format, aliases, networks, compose services, bad specs."""

from __future__ import annotations

import time

import pytest

from .util import LINKS, PROJECT, SERVICE, block_is, line, read, reports_about, split

DOMAIN = "hostsyncd.domain"

pytestmark = pytest.mark.engine


def test_block_format_alias_and_docker_lines_kept(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}, {db}:database"})
    plain = containers.run("plain")
    before = {name: containers.hosts_bytes(name) for name in (web, db, plain)}

    d = daemon.start()
    ip = containers.ip(db)
    expected = [line(ip, db), line(ip, "database", db)]
    text = wait_until(block_is(containers.hosts_path(web), expected))

    assert expected[0] == f"{ip}\t{db}"
    assert expected[1] == f"{ip}\tdatabase {db}"
    # Docker's lines first, byte for byte; then the one block, BEGIN ... END, last.
    seen = containers.hosts_bytes(web)
    assert seen == containers.hosts_path(web).read_bytes()
    assert seen.startswith(before[web])
    rest = seen[len(before[web]) :].decode().splitlines()
    assert rest[0].startswith("# BEGIN hostsyncd")
    assert rest[-1].startswith("# END hostsyncd")
    assert sorted(rest[1:-1]) == sorted(expected)
    assert split(text)[2:] == (1, 1)
    # Containers without links (a target, a bystander) get no block at all.
    for name in (db, plain):
        assert containers.hosts_bytes(name) == before[name]
    assert d.alive()


def test_network_choice_shared_first_by_name_and_pinned(containers, networks, daemon, wait_until):
    net_a, net_b = networks.create("a"), networks.create("b")  # "<prefix>a" < "<prefix>b"
    db = containers.run("db", network=net_b.name)
    containers.connect(db, net_a.name)
    only_b = containers.run("onlyb", labels={LINKS: db}, network=net_b.name)
    neither = containers.run("neither", labels={LINKS: db})  # default bridge only
    both = containers.run("both", labels={LINKS: db}, network=net_b.name)
    containers.connect(both, net_a.name)
    pinned = containers.run("pinned", labels={LINKS: f"{db}@{net_b.name} {db}:viaa@{net_a.name}"})

    daemon.start()
    ip_a, ip_b = containers.ip(db, net_a.name), containers.ip(db, net_b.name)
    # The shared network gives the address.
    wait_until(block_is(containers.hosts_path(only_b), [line(ip_b, db)]))
    # No shared network: the target's first network by name.
    wait_until(block_is(containers.hosts_path(neither), [line(ip_a, db)]))
    # Several shared networks: the first shared one by name.
    wait_until(block_is(containers.hosts_path(both), [line(ip_a, db)]))
    # @network pins the network, shared or not.
    wait_until(block_is(containers.hosts_path(pinned), [line(ip_b, db), line(ip_a, "viaa", db)]))


def test_ipv6_address_gets_its_own_line(containers, networks, daemon, wait_until):
    net = networks.create("v6", ipv6=True)
    db = containers.run("db", network=net.name)
    web = containers.run("web", labels={LINKS: f"{db}:data"}, network=net.name)
    daemon.start()
    ip4, ip6 = containers.ip(db, net.name), containers.ip6(db, net.name)
    assert ip6
    expected = [line(ip4, "data", db), line(ip6, "data", db)]
    wait_until(block_is(containers.hosts_path(web), expected))
    hosts = containers.hosts(web)
    assert f"{ip6}\tdata {db}" in hosts.splitlines()


INVALID_SPECS = [
    "bad#hash",
    "../etc",
    "x..y",
    "tgt:ali/as",
    "d\u00e9j\u00e0",
    "ctl\x07char",
    "emptyalias:",
    ":emptytarget",
    "emptynet@",
    "two@nets@here",
]


def test_invalid_specs_skipped_and_reported_once(containers, daemon, wait_until):
    db = containers.run("db")
    label = " ,".join([*INVALID_SPECS[:5], db, *INVALID_SPECS[5:], f"{db}:good"])
    web = containers.run("web", labels={LINKS: label})
    d = daemon.start(resync_interval=1)
    started = time.monotonic()
    ip = containers.ip(db)
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(ip, db), line(ip, "good", db)]))

    # Each bad spec is reported in an entry naming the dependent ("container" key).
    needles = {spec: spec.split("\x07")[0] for spec in INVALID_SPECS}
    for spec, needle in needles.items():
        d.wait_log(
            lambda e, needle=needle: reports_about([e], web, needle),
            what=f"a report naming {web} and the bad spec {spec!r}",
        )
    # ... and only once: not again on later resyncs, nor when the dependent restarts.
    containers.restart(web)
    wait_until(block_is(path, [line(ip, db), line(ip, "good", db)]))
    time.sleep(max(0.0, 3.0 - (time.monotonic() - started)))
    logs = d.logs()
    for spec, needle in needles.items():
        found = reports_about(logs, web, needle)
        assert len(found) == 1, f"spec {spec!r} reported {len(found)} times: {found}"
    assert d.alive()


def test_compose_service_takes_precedence_and_every_replica_counts(containers, daemon, wait_until):
    p = containers.prefix
    service = f"{p}api"

    def compose(project: str, svc: str) -> dict[str, str]:
        return {PROJECT: f"{p}{project}", SERVICE: svc}

    api1 = containers.run("proja-api-1", labels=compose("proja", service))
    api2 = containers.run("proja-api-2", labels=compose("proja", service))
    plain = containers.run("api")  # a container whose name is the service's name
    assert plain == service
    other = containers.run("projb-api-1", labels=compose("projb", service))
    web_a = containers.run("proja-web-1", labels={**compose("proja", "web"), LINKS: service})
    web_c = containers.run("projc-web-1", labels={**compose("projc", "web"), LINKS: service})
    loner = containers.run("loner", labels={LINKS: service})

    daemon.start()
    ips = {name: containers.ip(name) for name in (api1, api2, plain, other)}
    # Same project: the service wins over the container name, one line per replica.
    wait_until(
        block_is(
            containers.hosts_path(web_a),
            [line(ips[api1], service, api1), line(ips[api2], service, api2)],
        )
    )
    # Another project's service is never chosen; without one of its own, the container name.
    wait_until(block_is(containers.hosts_path(web_c), [line(ips[plain], service)]))
    wait_until(block_is(containers.hosts_path(loner), [line(ips[plain], service)]))

    # A replica that goes away takes its line with it.
    containers.rm(api2)
    wait_until(block_is(containers.hosts_path(web_a), [line(ips[api1], service, api1)]))


def test_target_sharing_another_containers_network(containers, daemon, wait_until):
    other = containers.run("other")
    tgt = containers.run("tgt", network=f"container:{other}")
    web = containers.run("web", labels={LINKS: f"{tgt}:svc"})
    daemon.start()
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(other), "svc", tgt)]))


def test_host_network_target_gets_no_line_and_is_reported(containers, daemon, wait_until):
    db = containers.run("db")
    hostnet = containers.run("hostnet", network="host")
    web = containers.run("web", labels={LINKS: f"{db} {hostnet}"})
    d = daemon.start()
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(containers.ip(db), db)]))
    d.wait_log(
        lambda e: reports_about([e], web, hostnet),
        what=f"a report naming {web} and the host-network target {hostnet}",
    )
    assert hostnet not in read(path)


def test_search_domain_from_config_and_label(containers, daemon, wait_until):
    """links.domain adds `<alias>.<domain>` and `<target>.<domain>` to every line, follows
    the target's moves, a dependent's hostsyncd.domain overrides it ("" for none), and a bad
    label is reported once by name and falls back to the config."""
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:database"})
    own = containers.run("own", labels={LINKS: f"{db}:database", DOMAIN: "corp.example"})
    none = containers.run("none", labels={LINKS: f"{db}:database", DOMAIN: ""})
    bad = containers.run("bad", labels={LINKS: f"{db}:database", DOMAIN: "no way"})
    d = daemon.start(resync_interval=1, extra={"links": {"domain": "internal"}})

    def expect(ip: str) -> dict[str, list[str]]:
        return {
            web: [f"{ip}\tdatabase {db} database.internal {db}.internal"],
            own: [f"{ip}\tdatabase {db} database.corp.example {db}.corp.example"],
            none: [line(ip, "database", db)],
            bad: [f"{ip}\tdatabase {db} database.internal {db}.internal"],
        }

    for name, lines in expect(containers.ip(db)).items():
        wait_until(block_is(containers.hosts_path(name), lines), what=f"{name}'s block")
        # What the container itself reads.
        assert lines[0] in containers.hosts(name).splitlines()
    containers.restart(db)
    ip_after = containers.ip(db)
    for name, lines in expect(ip_after).items():
        wait_until(block_is(containers.hosts_path(name), lines), what=f"{name} after db moved")
    time.sleep(2.5)  # two resyncs: the bad label must not be reported again
    found = reports_about(d.logs(), bad, "hostsyncd.domain")
    assert len(found) == 1, found
    assert "not a host name" in str(found[0])
    assert d.alive()
