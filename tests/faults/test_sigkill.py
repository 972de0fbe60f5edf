"""SIGKILL of hostsyncd at random moments while 20 dependents are being rewritten.

A mover keeps moving a target's address (stop it, a thief takes the freed address, start
it on a new one), so every move rewrites all 20 dependents' files twice. The daemon is
killed 50 times: half at a random moment 0.2-1 s after it was spawned, half a few
milliseconds after it logged its first write of a burst. After every kill every file must
still parse, keep Docker's lines, and hold zero or one well-formed block. Every 5th
restart (and the last) happens with the mover paused: then the files must be exactly
right when READY=1 arrives, and the daemon must write nothing more after it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from integration.util import LINKS, line

from .lib import Loop, docker_lines, expected_file, invalid_lines, markers, well_formed_block

pytestmark = pytest.mark.engine

DEPENDENTS = 20
KILLS = 50
READY_EVERY = 5


def _updates(path) -> int:
    return path.read_bytes().count(b'"hosts file updated"')


def test_sigkill_at_random_moments_never_corrupts_and_converges_before_ready(
    engine, containers, networks, daemon, notify, results, wait_until
):
    seed = int(os.environ.get("HSD_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    results["seed"] = seed
    net = networks.create("n")
    static = containers.run("static", network=net.name)
    db = containers.run("db", network=net.name)
    thief = containers.run("thief")
    with ThreadPoolExecutor(4) as pool:
        deps = list(pool.map(
            lambda i: containers.run(f"dep{i}", labels={LINKS: f"{static} {db}:database"},
                                     network=net.name),
            range(DEPENDENTS),
        ))  # fmt: skip
    paths = {dep: containers.hosts_path(dep) for dep in deps}
    docker_part = {dep: p.read_bytes() for dep, p in paths.items()}
    static_line = line(containers.ip(static, net.name), static)

    def move() -> None:
        old = containers.ip(db, net.name)
        containers.stop(db)
        containers.docker("network", "connect", "--ip", old, net.name, thief)
        containers.start(db)
        containers.docker("network", "disconnect", net.name, thief)

    def expected() -> dict[str, bytes]:
        db_line = line(containers.ip(db, net.name), "database", db)
        return {dep: expected_file(docker_part[dep], [static_line, db_line]) for dep in deps}

    figures = {
        "kills": 0, "kills_random": 0, "kills_after_first_write": 0, "kills_after_ready": 0,
        "kills_mid_burst": 0, "files_checked": 0, "files_invalid": 0, "files_two_blocks": 0,
        "docker_lines_lost": 0, "files_with_blank_debris": 0, "ready_checks": 0,
        "ready_converged": 0, "writes_after_ready": 0, "ready_seconds": [],
    }  # fmt: skip
    results["figures"] = figures
    problems: list[str] = []

    def check_files(when: str) -> None:
        for dep, path in paths.items():
            data = path.read_bytes()
            figures["files_checked"] += 1
            if bad := invalid_lines(data):
                figures["files_invalid"] += 1
                problems.append(f"{when}: {dep}: invalid lines {bad[:3]!r}")
            if not well_formed_block(data):
                figures["files_two_blocks"] += 1
                problems.append(f"{when}: {dep}: markers {markers(data)}: {data!r}")
            if docker_lines(data) != docker_lines(docker_part[dep]):
                figures["docker_lines_lost"] += 1
                problems.append(f"{when}: {dep}: Docker's lines changed: {data!r}")
            elif not data.startswith(docker_part[dep]) or data.endswith(b"\n\n"):
                figures["files_with_blank_debris"] += 1

    def ready_restart(k: int) -> None:
        """With the mover paused: start a daemon, read every file the moment READY=1
        arrives, and check they are exactly right then and stay untouched after."""
        mover.pause()
        want = expected()
        notify.drain()  # READY=1 of earlier daemons that lived long enough
        notify.messages.clear()
        spawned = time.monotonic()
        d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, level="info")
        at, seen = notify.on_ready(lambda: {dep: p.read_bytes() for dep, p in paths.items()})
        figures["ready_checks"] += 1
        figures["ready_seconds"].append(round(at - spawned, 3))
        wrong = [dep for dep in deps if seen[dep] != want[dep]]
        if not wrong:
            figures["ready_converged"] += 1
        else:
            first = wrong[0]
            problems.append(f"restart {k}: at READY=1 {len(wrong)} files not converged, "
                            f"e.g. {first}: {seen[first]!r} != {want[first]!r}")  # fmt: skip
        time.sleep(0.3)
        logs = d.logs()
        ready_at = next(i for i, e in enumerate(logs) if e["event"] == "ready")
        late = [e for e in logs[ready_at:] if e["event"] == "hosts file updated"]
        figures["writes_after_ready"] += len(late)
        if late:
            problems.append(f"restart {k}: {len(late)} writes after READY=1: {late[:2]}")
        d.kill()
        mover.resume()

    mover = Loop(move, name="mover").start()
    try:
        for k in range(KILLS):
            if k % READY_EVERY == READY_EVERY - 1:
                ready_restart(k)
            d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, level="info")
            if k % 2 == 0:
                time.sleep(rng.uniform(0.2, 1.0))
                figures["kills_random"] += 1
            else:
                # Kill a few milliseconds into a burst of writes (the first restart
                # after a move rewrites every file; so does the next move).
                deadline = time.monotonic() + 3
                while _updates(d.stderr_path) == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(rng.uniform(0, 0.012))
                figures["kills_after_first_write"] += 1
            os.kill(d.pid, signal.SIGKILL)
            d.proc.wait(10)
            figures["kills"] += 1
            written = _updates(d.stderr_path)
            figures["kills_after_ready"] += b'"ready"' in d.stderr_path.read_bytes()
            figures["kills_mid_burst"] += written % DEPENDENTS != 0
            check_files(f"kill {k}")
        ready_restart(KILLS)
    finally:
        mover.stop()
    figures["moves"] = mover.steps
    bad_kills = {p.split(":")[0] for p in problems if p.startswith("kill ")}
    results.update(fault="SIGKILL of hostsyncd mid-rewrite", tried=figures["kills"],
                   survived=figures["kills"] - len(bad_kills),
                   data_lost=figures["docker_lines_lost"] + figures["files_invalid"])
    results["problems"] = problems[:20]
    assert not problems, "\n".join(problems[:20])
    # The final state also reaches the containers themselves.
    want = expected()
    for dep in deps[:3]:
        assert containers.hosts_bytes(dep) == want[dep]
