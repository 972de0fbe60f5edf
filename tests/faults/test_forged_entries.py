"""Forged entries: the start fast path never takes an address from a hosts file.

A stopped target's hosts file is not quiet. A sidecar started with `--network
container:<target>` shares it and keeps running while the target is stopped; the target's
own entrypoint can write it right after each start. Either can write what looks like
Docker's rebuild of the file (`127.0.0.1 localhost`, then `<address>\\t<the target's short
id>`), which the start fast path takes as "the target is starting now". The file may be a
trigger to ask the engine; the address must come from the engine alone.

Each test reads the dependent's file from the host side (the inode its /etc/hosts is) every
2 ms on a thread and measures the longest time any forged address was readable in its
block: it must be 0, live and right after a daemon restart, in remove and in keep mode, for
forged addresses inside the target network's subnet (unused), outside it, 127.0.0.1,
0.0.0.0 and a multicast address. Once the target really starts, the dependent gets the
engine's address. The forgery is reported once, as a warning naming the target and the
running containers that share its file (`shared_with`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from integration.util import LINKS, block_is, line, read

from .lib import AddressWatch, state_of

pytestmark = pytest.mark.engine

MODES = ("remove", "keep")
# Rounds of the rebuild look-alike per forged address.
ROUNDS = 3
# The watch sleeps 2 ms between reads; on a loaded 2-core machine (load average 10 was
# seen here) some reads come late. 99% of the gaps between reads must stay under 50 ms, the
# window the trust rule allows a speculative address, or the watch could have missed one.
MAX_GAP_P99_MS = 50


def forged_addresses(net: Any) -> list[str]:
    """Inside the subnet (unused: the engine hands out addresses from .2 up), outside it,
    loopback, the unspecified address and a multicast address."""
    return [net.addr(200), "6.6.6.6", "127.0.0.1", "0.0.0.0", "224.0.0.1"]


def rebuild_lookalike(address: str, short_id: str) -> str:
    """What Docker's rebuild of a starting container's file looks like: emptied to the
    localhost line, then the full file with the container's own entry."""
    return (
        "echo '127.0.0.1 localhost' > /etc/hosts; sleep 0.05; "
        f"printf '127.0.0.1\\tlocalhost\\n{address}\\t{short_id}\\n' > /etc/hosts"
    )


def sidecar_setup(containers: Any, networks: Any) -> tuple[Any, str, str, str]:
    net = networks.create("n")
    db = containers.run("db", network=net.name)
    side = containers.run("side", network=f"container:{db}")
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    return net, db, side, web


def forgery_reports(d: Any, target: str) -> list[dict[str, Any]]:
    return [e for e in d.logs() if "forged" in str(e.get("event", "")).lower()
            and str(e.get("level", "")).lower() == "warning"
            and e.get("container_name") == target]  # fmt: skip


def forged_in_state(daemon: Any, forged: list[str]) -> list[str]:
    """Forged addresses the state file (what `hostsyncd status` shows) gives any link."""
    data, _ = state_of(daemon)
    return [a for dep in data.get("dependents", []) for link in dep.get("links", [])
            for a in link.get("addresses", []) if a in forged]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_sidecar_forgery_of_a_stopped_targets_file(
    mode, containers, networks, daemon, results, wait_until
):
    net, db, side, web = sidecar_setup(containers, networks)
    path = containers.hosts_path(web)
    db_path = containers.hosts_path(db)
    short_id = containers.id(db)[:12]
    forged = forged_addresses(net)
    d = daemon.start(on_target_stop=mode, level="info")
    ip = containers.ip(db, net.name)
    wait_until(block_is(path, [line(ip, db)]))

    watch = AddressWatch(path, forged).start()
    try:
        containers.stop(db)
        held = [line(ip, db)] if mode == "keep" else []
        wait_until(block_is(path, held), what=f"web's block after db stopped ({mode})",
                   show=lambda: read(path))
        for address in forged:
            for _ in range(ROUNDS):
                containers.exec(side, "sh", "-c", rebuild_lookalike(address, short_id))
                time.sleep(0.1)
            # The forgery must have landed in db's file, or this test could not fail.
            assert f"{address}\t{short_id}" in db_path.read_text(), db_path.read_text()
            time.sleep(0.4)
        still = wait_until(block_is(path, held), what="web's block unchanged by the forgery",
                           show=lambda: read(path))
        time.sleep(1.2)  # the state file is written at most once a second
        in_state = forged_in_state(daemon, forged)
        started = time.monotonic()
        containers.start(db)
        real = containers.ip(db, net.name)
        wait_until(block_is(path, [line(real, db)]), what="db's engine address after its start")
        converged = time.monotonic() - started
    finally:
        watch.stop()
    reports = forgery_reports(d, db)
    figures = watch.figures()
    results.update(
        fault="sidecar writes a rebuild look-alike into a stopped target's shared hosts file",
        mode=mode, tried=len(forged) * ROUNDS, survived=len(forged) * ROUNDS if d.alive() else 0,
        data_lost=0, forged=forged, **figures,
        forged_in_state_file=in_state, converged_after_start_s=round(converged, 3),
        forgery_reports=len(reports), report_fields=[
            {k: v for k, v in r.items() if k not in ("timestamp",)} for r in reports],
    )  # fmt: skip
    assert d.alive()
    assert watch.bad_reads == 0, f"a forged address was readable in web's file: {figures}"
    assert figures["gap_p99_ms"] <= MAX_GAP_P99_MS, f"the watch read too rarely: {figures}"
    assert still and not in_state, in_state
    assert 1 <= len(reports) <= len(forged), f"forgery reported {len(reports)} times"
    for report in reports:
        assert side in (report.get("shared_with") or []), report


@pytest.mark.parametrize("mode", MODES)
def test_sidecar_forgery_across_a_daemon_restart(
    mode, containers, networks, daemon, results, wait_until
):
    """Stopped targets are found at start: the forgery is already in the file when the new
    daemon starts, and goes on during its first seconds."""
    net, db, side, web = sidecar_setup(containers, networks)
    path = containers.hosts_path(web)
    short_id = containers.id(db)[:12]
    forged = forged_addresses(net)
    d = daemon.start(on_target_stop=mode, level="info")
    ip = containers.ip(db, net.name)
    wait_until(block_is(path, [line(ip, db)]))
    containers.stop(db)
    held = [line(ip, db)] if mode == "keep" else []
    wait_until(block_is(path, held), what=f"web's block after db stopped ({mode})",
                   show=lambda: read(path))
    d.stop()

    watch = AddressWatch(path, forged).start()
    forgeries = 0
    done = threading.Event()
    ready = threading.Event()
    errors: list[BaseException] = []

    def forge() -> None:
        nonlocal forgeries
        try:
            # Through the daemon's start (slow on a loaded machine: a CI run saw no report
            # when it was ready late in a fixed 4 s), and then long enough for the fast
            # path's probes, its backoff and the report's grace.
            cap = time.monotonic() + 20
            until: float | None = None  # 3 s after the daemon is ready
            while time.monotonic() < (until if until is not None else cap):
                if until is None and ready.is_set():
                    until = time.monotonic() + 3
                address = forged[forgeries % len(forged)]
                containers.exec(side, "sh", "-c", rebuild_lookalike(address, short_id))
                forgeries += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    try:
        containers.exec(side, "sh", "-c", rebuild_lookalike(forged[-1], short_id))
        forger = threading.Thread(target=forge, daemon=True)
        d2 = daemon.start(on_target_stop=mode, level="info")
        forger.start()
        d2.wait_log(lambda e: e.get("event") == "ready", timeout=15, what="ready")
        ready.set()
        done.wait(25)
        forger.join(5)
        time.sleep(0.5)
        still = wait_until(block_is(path, held), what="web's block unchanged by the forgery",
                           show=lambda: read(path))
        # Said while db is stopped: a start would make it moot (the daemon then drops it).
        wait_until(lambda: forgery_reports(d2, db), timeout=10,
                   what="the forgery reported while db is stopped")
        containers.start(db)
        real = containers.ip(db, net.name)
        wait_until(block_is(path, [line(real, db)]), what="db's engine address after its start")
    finally:
        watch.stop()
    assert not errors, errors
    reports = forgery_reports(d2, db)
    figures = watch.figures()
    results.update(
        fault="sidecar forges a stopped target's file while the daemon restarts",
        mode=mode, tried=forgeries + 1, survived=forgeries + 1 if d2.alive() else 0,
        data_lost=0, forged=forged, **figures, forgery_reports=len(reports),
    )  # fmt: skip
    assert d2.alive()
    assert forgeries >= 5, f"only {forgeries} forgeries during the daemon's first seconds"
    assert watch.bad_reads == 0, f"a forged address was readable in web's file: {figures}"
    assert figures["gap_p99_ms"] <= MAX_GAP_P99_MS, f"the watch read too rarely: {figures}"
    assert still
    assert 1 <= len(reports) <= len(forged), f"forgery reported {len(reports)} times"
    for report in reports:
        assert side in (report.get("shared_with") or []), report


RESTARTS = 5
ENTRYPOINT = 'printf "6.6.6.6\\t%s\\n" "$(hostname)" >> /etc/hosts; exec sleep 3600'


def test_target_entrypoint_appends_a_forged_own_entry_on_every_start(
    containers, networks, daemon, results, wait_until
):
    net = networks.create("n")
    db = containers.run("db", network=net.name, cmd=("sh", "-c", ENTRYPOINT))
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    path, db_path = containers.hosts_path(web), containers.hosts_path(db)
    short_id = containers.id(db)[:12]
    d = daemon.start(level="info")
    wait_until(block_is(path, [line(containers.ip(db, net.name), db)]))
    watch = AddressWatch(path, ["6.6.6.6"]).start()
    took: list[float] = []
    try:
        for _ in range(RESTARTS):
            t0 = time.monotonic()
            containers.restart(db)
            real = containers.ip(db, net.name)
            wait_until(lambda: f"6.6.6.6\t{short_id}" in db_path.read_text(),
                       what="the entrypoint's forged own entry in db's file")  # fmt: skip
            wait_until(block_is(path, [line(real, db)]), what="db's engine address")
            took.append(round(time.monotonic() - t0, 3))
            time.sleep(0.3)
            assert block_is(path, [line(real, db)])(), path.read_text()
    finally:
        watch.stop()
    figures = watch.figures()
    results.update(
        fault="target's entrypoint appends a forged own entry (6.6.6.6) on every start",
        tried=RESTARTS, survived=RESTARTS if d.alive() else 0, data_lost=0, **figures,
        restart_to_real_address_s=took,
    )  # fmt: skip
    assert d.alive()
    assert watch.bad_reads == 0, f"the forged own entry was readable in web's file: {figures}"
    assert figures["gap_p99_ms"] <= MAX_GAP_P99_MS, f"the watch read too rarely: {figures}"


def test_dependent_forges_its_own_block_in_keep_mode_across_a_daemon_restart(
    containers, networks, daemon, results, wait_until
):
    """Keep mode keeps a stopped target's last lines across a daemon restart. They must be
    the engine's last word, not whatever the block holds when the daemon starts: here the
    dependent itself rewrote its block while the daemon was down."""
    net = networks.create("n")
    db = containers.run("db", network=net.name)
    web = containers.run("web", labels={LINKS: db}, network=net.name)
    path = containers.hosts_path(web)
    d = daemon.start(on_target_stop="keep", level="info")
    ip = containers.ip(db, net.name)
    wait_until(block_is(path, [line(ip, db)]))
    containers.stop(db)
    time.sleep(1.5)  # the die event handled and the state written
    assert block_is(path, [line(ip, db)])(), read(path)
    d.stop()
    forged = path.read_bytes().replace(f"{ip}\t{db}".encode(), f"6.6.6.6\t{db}".encode())
    containers.exec(web, "sh", "-c", "cat > /etc/hosts", input=forged)
    assert f"6.6.6.6\t{db}" in read(path)
    d2 = daemon.start(on_target_stop="keep", level="info")
    d2.wait_log(lambda e: e.get("event") == "ready", timeout=15, what="ready")
    at_ready = read(path)
    watch = AddressWatch(path, ["6.6.6.6"]).start()
    try:
        time.sleep(1.0)
        kept = block_is(path, [line(ip, db)])()
        containers.start(db)
        real = containers.ip(db, net.name)
        wait_until(block_is(path, [line(real, db)]), what="db's engine address after its start")
    finally:
        watch.stop()
    figures = watch.figures()
    results.update(
        fault="keep mode: the dependent forges its own block while the daemon is down",
        tried=1, survived=int(d2.alive()), data_lost=0, **figures,
        forged_at_ready="6.6.6.6" in at_ready, kept_engine_line=bool(kept),
    )  # fmt: skip
    assert d2.alive()
    assert "6.6.6.6" not in at_ready, f"the forged line survived into READY:\n{at_ready}"
    assert watch.bad_reads == 0, f"the forged line was readable after READY: {figures}"
    assert kept, f"keep mode lost the engine's last line for db:\n{read(path)}"
