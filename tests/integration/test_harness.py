"""The test harness itself: private engine, image, container and network fixtures."""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.engine


def test_engine_answers_and_is_reused_quickly(engine):
    assert engine.ping()
    started = time.monotonic()
    engine.ensure_running()
    engine.ensure_image()
    assert time.monotonic() - started < 2.0, "reusing a running engine should be instant"
    version = engine.docker("version", "--format", "{{.Server.APIVersion}}").stdout.decode()
    assert version.strip()


def test_containers_fixture_reads_hosts_from_inside_and_outside(containers):
    a = containers.run("a")
    b = containers.run("b")
    assert a == containers.name("a") and a.startswith(containers.prefix)
    for name in (a, b):
        seen = containers.hosts(name)
        assert "127.0.0.1\tlocalhost" in seen
        assert containers.ip(name) in seen
        # The host-side file is the one bind-mounted onto /etc/hosts.
        path = containers.hosts_path(name)
        assert path == containers.engine.containers_root / containers.id(name) / "hosts"
        assert path.read_bytes() == containers.hosts_bytes(name)
        assert containers.inspect(name)["HostsPath"] == str(path)
    assert containers.ip("a") != containers.ip("b")


def test_networks_fixture_gives_ipv4_and_ipv6(containers, networks):
    net = networks.create("n6", ipv6=True)
    c = containers.run("c", network="n6")
    assert containers.ip(c, "n6").startswith(f"10.233.{net.x}.")
    assert containers.ip6(c, "n6").startswith(f"fd00:231:{net.x:x}::")
    fixed = containers.run("d", "--ip", net.addr(77), network=net.name)
    assert containers.ip(fixed) == net.addr(77)


def test_host_side_in_place_write_is_seen_inside(containers):
    web = containers.run("web")
    path = containers.hosts_path(web)
    ino = os.stat(path).st_ino
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data + b"10.1.2.3\tprobe\n")
        f.truncate()
    assert os.stat(path).st_ino == ino
    assert "10.1.2.3\tprobe" in containers.hosts(web)
