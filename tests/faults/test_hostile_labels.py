"""Hostile link labels, through the real engine: injection attempts must not reach any file.

Each hostile dependent carries one valid spec (`<db>:ok<N>`) among the hostile text, so
the test also sees that the rest of a label still applies. Labels are set through the
Engine API (not the CLI), so they can hold any character, NUL included. (The parser has
its own >=10,000-case property test in tests/unit/test_links.py; this is the daemon, end to
end.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker
import pytest
from integration.util import LINKS, block_is, line, reports_about

from .lib import block_of, docker_lines, invalid_lines

pytestmark = pytest.mark.engine

OWNER_LABEL = "hsdtest.owner"  # what the `containers` fixture cleans up by


@dataclass
class Case:
    name: str
    label: str  # "{db}" and "{ok}" are filled in
    invalid: tuple[str, ...]  # a needle for each spec that must be reported as invalid


LONG = "x" * 300
# Needles are what the report shows of the spec: "spec '<spec as repr>'", cut at 80 chars.
CASES = [
    Case("newline", "{ok}\n10.0.0.1\tevil\n{db}:bad#\n10.0.0.2 evil2", ("spec '{db}:bad#'",)),
    Case("crlf", "{ok}\r\n127.0.0.1 localhost\r\n{db}:a\x0bb", ("spec '{db}:a\\x0bb'",)),
    Case("tabs", "{ok}\t\t{db}:t\x0c2\t{db}:\tevil", ("spec '{db}:t\\x0c2'", "spec '{db}:'")),
    Case("long-alias", "{ok} {db}:" + LONG, ("spec '{db}:xxxxxxxxxxxxxxxxxxxx",)),
    Case("long-target", LONG + ":alias300 {ok}", ("spec 'xxxxxxxxxxxxxxxxxxxxxxxx",)),
    Case("long-label", "{ok} " + " ".join(f"{{db}}:z{i}-" for i in range(3000)),
         ("spec '{db}:z0-'", "spec '{db}:z254-'", "longer than", "more than 256")),
    Case("non-ascii", "{db}:dätabase {ok} {db}:\uff44\uff42 {db}:db\u200b {db}:x\u2028y",
         ("dätabase'", "\uff44\uff42'", "db\\u200b'", "x\\u2028y'")),
    Case("traversal", "../../etc {ok} {db}:../../etc/passwd {db}@../../x ..",
         ("spec '../../etc'", "passwd'", "@../../x'", "spec '..'")),
    Case("empty", ",,, {ok} , {db}: :{db} {db}@ @ : ",
         ("spec '{db}:'", "spec ':{db}'", "spec '{db}@'", "spec '@'", "spec ':'")),
    Case("hash", "# {ok} {db}:x#y {db}#comment", ("spec '#'", "x#y'", "#comment'")),
    Case("forged-line", "{ok} 10.0.0.1\tevil {db}:evil\x00 {db}:\x1b[31mred",
         ("evil\\x00'", "\\x1b[31mred'")),
    Case("forged-marker", "{ok} #\u00a0END\u00a0hostsyncd {db}:-rf {db}:a..b",
         ("END\\xa0hostsyncd'", "-rf'", "a..b'")),
]


def test_hostile_labels_inject_nothing_and_others_are_served(
    engine, containers, daemon, results, wait_until
):
    api = docker.APIClient(base_url=engine.host, version="auto")
    db = containers.run("db")
    plain = containers.run("plain")
    normal = containers.run("normal", labels={LINKS: f"{db}:ok"})

    def run_api(short: str, label: str) -> str:
        name = containers.name(short)
        created = api.create_container(
            containers.image, ["sleep", "3600"], name=name, stop_signal="SIGKILL",
            labels={OWNER_LABEL: containers.prefix, LINKS: label},
        )  # fmt: skip
        api.start(created["Id"])
        return name

    hostile = {}
    for i, case in enumerate(CASES):
        label = case.label.replace("{ok}", f"{{db}}:ok{i}").replace("{db}", db)
        hostile[run_api(f"h-{case.name}", label)] = (i, case)
    everyone = [db, plain, normal, *hostile]
    docker_part = {name: docker_lines(containers.hosts_path(name).read_bytes())
                   for name in everyone}  # fmt: skip

    d = daemon.start(resync_interval=1)
    ip = containers.ip(db)
    wait_until(block_is(containers.hosts_path(normal), [line(ip, "ok", db)]))
    for name, (i, _) in hostile.items():
        wait_until(block_is(containers.hosts_path(name), [line(ip, f"ok{i}", db)]))
    # A dependent that arrives after all of that is served as usual.
    late = containers.run("late", labels={LINKS: f"{db}:ok"})
    wait_until(block_is(containers.hosts_path(late), [line(ip, "ok", db)]))
    time.sleep(2.5)  # a couple of resyncs: nothing is reported twice, nothing changes

    logs = d.logs()
    reported: dict[str, list[int]] = {}
    problems = []
    for name, (_, case) in hostile.items():
        for needle in case.invalid:
            needle = needle.replace("{db}", db)
            found = reports_about(logs, name, needle)
            reported.setdefault(case.name, []).append(len(found))
            if len(found) != 1:
                problems.append(f"{case.name}: {needle!r} reported {len(found)} times")
    injected = 0
    for name in [*everyone, late]:
        data = containers.hosts_path(name).read_bytes()
        expected = []
        if name in hostile:
            expected = [line(ip, f"ok{hostile[name][0]}", db)]
        elif name in (normal, late):
            expected = [line(ip, "ok", db)]
        if (bad := invalid_lines(data)) or block_of(data) != expected:
            injected += 1
            problems.append(f"{name}: invalid lines {bad!r}, block {block_of(data)!r}")
        if name in docker_part and docker_lines(data) != docker_part[name]:
            injected += 1
            problems.append(f"{name}: Docker's lines changed: {data!r}")
        for word in (b"evil", b"10.0.0.", b"etc", b"passwd", b"red", b"x" * 64):
            if word in data:
                injected += 1
                problems.append(f"{name}: {word!r} made it into the file")
    results.update(
        fault="hostile link labels (injection attempts)",
        tried=len(CASES), survived=len(CASES) if d.alive() else 0, data_lost=injected,
        cases=[c.name for c in CASES], reports_per_invalid_spec=reported,
    )  # fmt: skip
    assert d.alive()
    assert not problems, "\n".join(problems)
