"""A container's junk is never amplified: not into the logs, the state file or memory.

Ten dependents each fill their own block (between hostsyncd's markers) with about 900 KB of
foreign lines. The daemon puts each block back; what it logs and keeps about that carries
only the lines it rendered, plus a count of the foreign lines it removed
(`foreign_removed`). Whole scenario: under 200 KB of daemon log, no log record over 8 KiB,
a state file under 100 KB with no junk in it. Once the ten dependents are removed, the
daemon's RSS comes back to within 20 MB of where it was before the junk.
"""

from __future__ import annotations

import json
import time

import pytest
from integration.util import BEGIN, END, LINKS, block_is, line

from .lib import rss_kib, state_of

pytestmark = pytest.mark.engine

DEPENDENTS = 10
JUNK_BYTES = 900_000
MAX_LOG_BYTES = 200_000
MAX_RECORD_BYTES = 8 * 1024
MAX_STATE_BYTES = 100_000
RSS_BACK_KIB = 20 * 1024


def junk_lines() -> list[bytes]:
    lines, size, n = [], 0, 0
    while size < JUNK_BYTES:
        raw = b"10.9.9.%d\tjunk%06d\n" % (n % 250 + 1, n)
        lines.append(raw)
        size += len(raw)
        n += 1
    return lines


def with_junk_in_block(content: bytes, junk: list[bytes]) -> bytes:
    """The file with the junk lines inside hostsyncd's block, before its END marker."""
    text = content.split(b"\n")
    end = next(i for i, ln in enumerate(text) if ln.startswith(END.encode()))
    assert any(ln.startswith(BEGIN.encode()) for ln in text[:end]), content
    return b"\n".join(text[:end]) + b"\n" + b"".join(junk) + b"\n".join(text[end:])


def test_junk_in_own_block_is_not_amplified(containers, daemon, results, wait_until):
    db = containers.run("db")
    deps = [containers.run(f"dep{i}", labels={LINKS: db}) for i in range(DEPENDENTS)]
    paths = {dep: containers.hosts_path(dep) for dep in deps}
    d = daemon.start(level="debug")
    ip = containers.ip(db)
    want = [line(ip, db)]
    for path in paths.values():
        wait_until(block_is(path, want))
    d.wait_log(lambda e: e.get("event") == "ready", what="ready")
    time.sleep(1.0)
    rss_before = rss_kib(d.pid)
    log_before = d.stderr_path.stat().st_size

    junk = junk_lines()
    started = time.monotonic()
    for dep, path in paths.items():
        data = with_junk_in_block(path.read_bytes(), junk)
        # Written by the container itself, in one go from a file inside it.
        containers.exec(dep, "sh", "-c", "cat > /junk && cat /junk > /etc/hosts && rm /junk",
                        input=data)  # fmt: skip
    for path in paths.values():
        wait_until(block_is(path, want), timeout=30, what="the block put back after the junk")
    repaired_s = time.monotonic() - started
    time.sleep(1.5)  # the state file is written at most once a second
    rss_after = rss_kib(d.pid)
    state, state_bytes = state_of(daemon)
    raw_state = (daemon.tmp / "state.json").read_bytes()

    raw_log = d.stderr_path.read_bytes()
    records = raw_log.splitlines()
    longest = max(len(r) for r in records)
    logs = d.logs()
    updates = [e for e in logs if e.get("event") == "hosts file updated"
               and e.get("container_name") in paths]  # fmt: skip
    rendered = {line(ip, db)}
    foreign = {dep: sum(int(e.get("foreign_removed") or 0) for e in updates
                        if e.get("container_name") == dep) for dep in deps}  # fmt: skip
    unrendered = [x for e in updates for x in [*e.get("added", []), *e.get("removed", [])]
                  if x not in rendered]  # fmt: skip

    # The dependents go: what was kept for them must go too.
    for dep in deps:
        containers.rm(dep)
    wait_until(lambda: not {x["name"] for x in state_of(daemon)[0]["dependents"]} & set(deps),
               what="the removed dependents gone from the state file")  # fmt: skip
    time.sleep(2.0)
    rss_gone = rss_kib(d.pid)

    results.update(
        fault=f"{DEPENDENTS} dependents fill their own block with ~900 KB of junk lines",
        tried=DEPENDENTS, survived=DEPENDENTS if d.alive() else 0, data_lost=0,
        junk_lines_per_dependent=len(junk), junk_bytes_per_dependent=sum(map(len, junk)),
        repaired_all_s=round(repaired_s, 3),
        log_bytes_total=len(raw_log), log_bytes_scenario=len(raw_log) - log_before,
        log_records=len(records), longest_log_record_bytes=longest,
        junk_in_log=b"junk" in raw_log, update_records=len(updates),
        foreign_removed=foreign, unrendered_lines_logged=len(unrendered),
        state_file_bytes=state_bytes, junk_in_state=b"junk" in raw_state,
        rss_before_kib=rss_before["VmRSS"], rss_after_junk_kib=rss_after["VmRSS"],
        rss_after_removal_kib=rss_gone["VmRSS"], vm_hwm_kib=rss_gone["VmHWM"],
    )  # fmt: skip
    assert d.alive()
    assert len(raw_log) < MAX_LOG_BYTES, f"{len(raw_log)} bytes of daemon log"
    assert longest <= MAX_RECORD_BYTES, f"a log record of {longest} bytes"
    assert b"junk" not in raw_log, "junk copied into the daemon's log"
    assert not unrendered, f"lines hostsyncd did not render were logged: {unrendered[:5]}"
    assert all(n >= len(junk) for n in foreign.values()), (
        f"foreign_removed per dependent {foreign}, {len(junk)} junk lines each")
    assert state_bytes < MAX_STATE_BYTES, f"state file of {state_bytes} bytes"
    assert b"junk" not in raw_state, json.dumps(state)[:2000]
    assert rss_gone["VmRSS"] - rss_before["VmRSS"] <= RSS_BACK_KIB, (rss_before, rss_gone)
