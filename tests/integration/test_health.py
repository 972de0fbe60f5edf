"""Health-gated links (links.health = "wait", the hostsyncd.health label) on the real engine:
a target with a HEALTHCHECK gives its line only while the engine says it is healthy.

The healthcheck is `test -f /ok` every 300 ms (one failure is unhealthy), toggled with
`docker exec`. Absence is checked behind a barrier: a sentinel target the dependent links
to is started, and once its line is there, every event before it has been handled."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import docker
import pytest

from .util import LINKS, block_is, line, read, reports_about, split

pytestmark = pytest.mark.engine

HEALTH = "hostsyncd.health"
CHECK = "test -f /ok"


def _barrier(containers, wait_until, path, expected, sentinel: str) -> list[str]:
    """Start `sentinel` (linked from the dependent) and wait for the block to be `expected`
    plus its line: then every event before its start has been handled."""
    containers.run(sentinel)
    lines = [*expected, line(containers.ip(sentinel), containers.name(sentinel))]
    wait_until(block_is(path, lines))
    return lines


def _healthy(containers, wait_until, name: str, status: str) -> None:
    wait_until(lambda: containers.health(name) == status, timeout=10,
               what=f"{name} {status} (engine)")


def test_wait_follows_health_and_targets_without_a_check_are_unaffected(
        containers, daemon, wait_until):
    db = containers.run("db", health_cmd=CHECK)
    plain = containers.run("plain")  # no healthcheck
    s1, s2, s3 = containers.name("s1"), containers.name("s2"), containers.name("s3")
    web = containers.run("web", labels={LINKS: f"{db} {plain} {s1} {s2} {s3}"})
    d = daemon.start(health="wait")
    path = containers.hosts_path(web)
    db_line, plain_line = line(containers.ip(db), db), line(containers.ip(plain), plain)

    # Starting, then unhealthy: no line for db; plain's line all along.
    wait_until(block_is(path, [plain_line]))
    _healthy(containers, wait_until, db, "unhealthy")
    base = _barrier(containers, wait_until, path, [plain_line], "s1")

    # status shows why, from the state file the daemon writes.
    def status_says() -> str | bool:
        out = daemon.cli("status", "--config", str(d.config)).stdout
        return out if f"!! {db}: waiting for health" in out else False

    wait_until(status_says, what="status showing the link waiting for health")
    graph = daemon.cli("graph", "--config", str(d.config)).stdout
    assert f"!! {db}  unresolved: waiting for health" in graph

    containers.exec(db, "touch", "/ok")  # healthy
    wait_until(block_is(path, [*base, db_line]))
    containers.exec(db, "rm", "/ok")  # unhealthy again: the line goes
    wait_until(block_is(path, base))
    _healthy(containers, wait_until, db, "unhealthy")
    base = _barrier(containers, wait_until, path, base, "s2")
    containers.exec(db, "touch", "/ok")  # back to healthy
    wait_until(block_is(path, [*base, db_line]))
    assert db_line in split(containers.hosts(web))[1]

    # Paused: the list shows "(Paused)" and no health, and the engine sends no health event
    # until it is unpaused. A paused target keeps its lines, health-gated or not.
    containers.pause(db)
    _barrier(containers, wait_until, path, [*base, db_line], "s3")
    containers.unpause(db)

    logs = d.logs()
    # Waiting for health is routine: said at info, never as a warning or error.
    said = [e for e in logs if "waiting for health" in str(e.get("event", ""))]
    assert said and {e["level"] for e in said} == {"info"}
    # The events arrived, and the exec chatter of every healthcheck run did not.
    actions = [e.get("action", "") for e in logs if e.get("event") == "engine event"]
    assert "health_status" in actions
    assert not [a for a in actions if a.startswith("exec")]


def test_label_overrides_the_config_both_ways_and_a_bad_value_is_said(
        containers, daemon, wait_until):
    db = containers.run("db", health_cmd=CHECK)  # never healthy: no /ok
    sentinel = containers.name("sentinel")
    plain_dep = containers.run("plain", labels={LINKS: f"{db} {sentinel}"})
    opt_in = containers.run("optin", labels={LINKS: f"{db} {sentinel}", HEALTH: "wait"})
    opt_out = containers.run("optout", labels={LINKS: f"{db} {sentinel}", HEALTH: "ignore"})
    bad = containers.run("bad", labels={LINKS: f"{db} {sentinel}", HEALTH: "sometimes"})
    _healthy(containers, wait_until, db, "unhealthy")
    containers.run("sentinel")
    db_line = line(containers.ip(db), db)
    s_line = line(containers.ip(sentinel), sentinel)
    path = containers.hosts_path

    # Config "ignore": only the opt-in dependent waits.
    d = daemon.start(health="ignore")
    wait_until(block_is(path(plain_dep), [db_line, s_line]))
    wait_until(block_is(path(opt_out), [db_line, s_line]))
    wait_until(block_is(path(bad), [db_line, s_line]))  # falls back to "ignore"
    wait_until(block_is(path(opt_in), [s_line]))
    entry = d.wait_log(lambda e: "hostsyncd.health" in str(e.get("event", "")),
                       what="the bad label reported")
    assert entry["container_name"] == bad
    assert "'sometimes'" in entry["event"] and "links.health (ignore)" in entry["event"]
    assert entry["level"] == "warning"
    d.stop()

    # Config "wait": only the opt-out dependent gets db's line.
    d = daemon.start(health="wait")
    wait_until(block_is(path(plain_dep), [s_line]))
    wait_until(block_is(path(opt_in), [s_line]))
    wait_until(block_is(path(bad), [s_line]))  # falls back to "wait"
    wait_until(block_is(path(opt_out), [db_line, s_line]))
    d.wait_log(lambda e: "links.health (wait)" in str(e.get("event", "")))
    # Said once, naming the container.
    assert len(reports_about(d.logs(), bad, "hostsyncd.health")) == 1


def _record(path, stop: threading.Event, seen: list[tuple[int, int, bool]],
            needle: str) -> None:
    """Samples (ns before the read, ns after it, whether the file held `needle`) every 2 ms
    until `stop`. Both times matter: this thread can wait milliseconds for the GIL between
    taking a time and reading, so a read proves the line was there only by its end."""
    while not stop.wait(0.002):
        with contextlib.suppress(OSError):
            begun = time.time_ns()
            has = needle in read(path)
            seen.append((begun, time.time_ns(), has))


@pytest.mark.parametrize("first_seen", ["stopped", "running"])
def test_a_restarted_target_has_no_line_before_its_healthy_event(
        containers, daemon, wait_until, engine, first_seen):
    """After every start a healthcheck is `starting` again, and the engine sends no event
    for that. The line must not come back with the start (nor through the start fast path)
    but only after `health_status: healthy`. With first_seen "stopped", the daemon never saw
    the target run: it only knows of the healthcheck by asking the engine."""
    db = containers.run("db", health_cmd=CHECK, health_interval="500ms",
                        create_only=first_seen == "stopped")
    web = containers.run("web", labels={LINKS: db})
    d = daemon.start(health="wait")
    path = containers.hosts_path(web)
    if first_seen == "stopped":
        d.wait_log(lambda e: e.get("event") == "full resync", what="the first sync")
    else:
        containers.exec(db, "touch", "/ok")
        wait_until(block_is(path, [line(containers.ip(db), db)]))
    # The timeout bounds each read of the event stream: no event in 30 s fails the test.
    client = docker.APIClient(base_url=engine.host, version="auto", timeout=30)
    db_id = containers.id(db)
    stream = client.events(decode=True, filters={"container": [db_id],
                                                 "event": ["start", "health_status"]})
    try:
        for _ in range(2):
            seen: list[tuple[int, bool]] = []
            stop = threading.Event()
            recorder = threading.Thread(target=_record, args=(path, stop, seen, f"\t{db}"))
            recorder.start()
            # Not the start event's time: the engine connects the network (and the start
            # fast path may write) about 200 ms before it sends that.
            issued = time.time_ns()
            try:
                if containers.state(db) == "running":
                    containers.restart(db)
                else:
                    containers.start(db)
                    containers.exec(db, "touch", "/ok")  # kept across restarts
                times = {}
                for event in stream:
                    times.setdefault(event["Action"], int(event["timeNano"]))
                    if event["Action"] == "health_status: healthy":
                        break
                ip = containers.ip(db)
                wait_until(block_is(path, [line(ip, db)]))
            finally:
                stop.set()
                recorder.join()
            started, healthy = times["start"], times["health_status: healthy"]
            assert healthy - started > 200_000_000, times  # a real starting phase
            # From the first read after the command without the line (a restart's die takes
            # the old one away) until the healthy event, the line must not come back.
            gone = next((b for b, _, has in seen if b >= issued and not has), None)
            assert gone is not None and gone < healthy, "the line never went with the start"
            # A read that saw the line and ended before the healthy event's time proves it
            # came early (CI once counted a read stamped 0.1 ms before the event, which must
            # have waited for the GIL: the daemon wrote 1.5 ms after that stamp).
            early = [e for b, e, has in seen if has and b >= gone and e < healthy]
            assert not early, (
                f"line seen {(healthy - early[0]) / 1e6:.1f} ms before the healthy event")
            # And the line is there when it should be (the recorder saw it appear).
            assert any(has for _, e, has in seen if e >= healthy)
    finally:
        stream.close()
        client.close()
    assert json.loads(daemon.cli("graph", "--format", "json", "--config",
                                 str(d.config)).stdout)["dependents"][0]["health"] == "wait"
