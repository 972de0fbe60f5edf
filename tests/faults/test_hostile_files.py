"""A container writes junk into its own /etc/hosts: 64 MB of random bytes, NUL bytes,
invalid UTF-8, forged BEGIN/END markers by the thousand, forged blocks racing the daemon.

Through all of it the daemon stays up with a bounded memory footprint (VmRSS and VmHWM
below 100 MB), blocks never pile up, and every other container is served. A file over
`sync.max_hosts_bytes` (1 MiB) is left alone and reported once.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from integration.util import LINKS, block_is, line, mentions, read, split

from .lib import markers, rss_kib, well_formed_block

pytestmark = pytest.mark.engine

LIMIT_KIB = 100 * 1024
BIG = 64 << 20


def test_junk_in_a_containers_own_hosts_file(containers, daemon, results, wait_until):
    db, db2, db3 = containers.run("db"), containers.name("db2"), containers.name("db3")
    evil = containers.run("evil", labels={LINKS: f"{db} {db2} {db3}"})
    good = containers.run("good", labels={LINKS: f"{db} {db2} {db3}"})
    evil_path, good_path = containers.hosts_path(evil), containers.hosts_path(good)
    d = daemon.start(resync_interval=1, level="info")
    ip = containers.ip(db)
    wait_until(block_is(evil_path, [line(ip, db)]))
    wait_until(block_is(good_path, [line(ip, db)]))

    rss: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                rss.append(rss_kib(d.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps: dict[str, dict] = {}

    def sh(script: str) -> None:
        containers.exec(evil, "sh", "-c", script)

    # 1. 64 MB of random bytes: left alone, reported once; the others are still served.
    sh(f"head -c {BIG} /dev/urandom > /etc/hosts")
    assert evil_path.stat().st_size == BIG
    digest = hashlib.sha256(evil_path.read_bytes()).hexdigest()
    containers.run("db2")
    ip2 = containers.ip(db2)
    wait_until(block_is(good_path, [line(ip, db), line(ip2, db2)]),
               what="another dependent served while one holds 64 MB")  # fmt: skip
    time.sleep(2.5)  # two resyncs and a burst of file events later
    big_reports = [e for e in d.logs() if e.get("container_name") == evil
                   and mentions(e, "larger than")]  # fmt: skip
    untouched = hashlib.sha256(evil_path.read_bytes()).hexdigest() == digest
    steps["64MB random"] = {"reports": len(big_reports), "left_alone": untouched}

    # 2. Just under the limit: NUL bytes, invalid UTF-8, thousands of forged markers.
    junk = b"".join(
        b"# BEGIN hostsyncd forged %d\n\x00\xff\xfe\xc3(\n10.6.6.6\tevil\n# END hostsyncd\n" % i
        if i % 2 else b"# END hostsyncd stray\n\x00\x00\x00 \xe2\x82 junk %d\n" % i
        for i in range(20000)
    )[: (1 << 20) - 4096]
    containers.exec(evil, "sh", "-c", "cat > /etc/hosts", input=junk)
    want = [line(ip, db), line(ip2, db2)]
    fixed = wait_until(block_is(evil_path, want), what="one block after forged markers")
    steps["1MiB forged markers"] = {"markers_after": markers(fixed.encode()),
                                    "size_after": evil_path.stat().st_size}  # fmt: skip

    # 3. Forged blocks appended in a tight loop while the daemon rewrites the file and a
    #    target comes and goes.
    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, markers(evil_path.read_bytes())[0])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        sh("i=0; while [ $i -lt 200 ]; do "
           "printf '# BEGIN hostsyncd x\\n10.6.6.6\\tevil\\n# END hostsyncd\\n\\0\\n' "
           ">> /etc/hosts; i=$((i+1)); done")  # fmt: skip
        containers.run("db3")
        containers.stop(db3)
    finally:
        stop.set()
        watcher.join(5)
    settled = wait_until(block_is(evil_path, want), what="one block after the forging loop")
    steps["forged blocks in a loop"] = {"most_begin_lines_seen": most,
                                        "markers_after": markers(settled.encode())}  # fmt: skip

    # 4. Small junk with NUL bytes and invalid UTF-8 is kept as it is, the block after it.
    small = b"127.0.0.1\tlocalhost\n\x00\x00 nul\n\xff\xfe\xc3( not utf-8\n# END hostsyncd\n"
    containers.exec(evil, "sh", "-c", "cat > /etc/hosts", input=small)
    kept = wait_until(lambda: (data := evil_path.read_bytes()).startswith(small.replace(
        b"# END hostsyncd\n", b"")) and block_is(evil_path, want)() and data,
        what="junk kept, stray END removed, block after it")  # fmt: skip
    steps["small junk"] = {"file": kept.decode("latin-1")}

    sampling.set()
    sampler.join(5)
    memory = rss_kib(d.pid)
    good_text = wait_until(block_is(good_path, want))
    results.update(
        fault="junk in a container's own /etc/hosts (64 MB, NUL, bad UTF-8, forged markers)",
        tried=len(steps), survived=len(steps) if d.alive() else 0, data_lost=0,
        steps=steps, vm_hwm_kib=memory["VmHWM"], vm_rss_kib=memory["VmRSS"],
        rss_max_sampled_kib=max(rss, default=0), rss_samples=len(rss),
    )  # fmt: skip
    assert d.alive()
    assert memory["VmHWM"] < LIMIT_KIB and memory["VmRSS"] < LIMIT_KIB, memory
    assert steps["64MB random"] == {"reports": 1, "left_alone": True}, steps
    assert well_formed_block(fixed.encode()) and well_formed_block(settled.encode())
    assert "10.6.6.6" not in read(evil_path)
    assert containers.hosts(good) == good_text


def test_file_just_under_the_limit_never_keeps_a_stale_line(
    containers, daemon, results, wait_until
):
    """A container fills its hosts file to just under `sync.max_hosts_bytes`. Adding the
    block must not push the file over the limit in a way that leaves the daemon unable to
    maintain that block: once the target stops, its line must go (default mode), or the
    block must never have been written. A stale line would send traffic to whoever gets
    the address next."""
    db = containers.run("db")
    evil = containers.run("evil", labels={LINKS: db})
    path = containers.hosts_path(evil)
    d = daemon.start(resync_interval=1, level="info")
    ip = containers.ip(db)
    wait_until(block_is(path, [line(ip, db)]))
    limit = 1 << 20
    filler = b"".join(b"# padding line %06d ........................................\n" % i
                      for i in range(limit // 60))  # fmt: skip
    filler = filler[: limit - 40]
    filler = filler[: filler.rfind(b"\n") + 1]
    containers.exec(evil, "sh", "-c", "cat > /etc/hosts", input=filler)
    # Whatever the daemon does with it, it settles.
    time.sleep(2.5)
    size_with_block = path.stat().st_size
    had_block = f"{ip}\t{db}" in read(path)
    containers.stop(db)
    time.sleep(2.5)  # two resyncs; the die event came long before
    text = read(path)
    stale = f"{ip}\t{db}" in text
    at = text.find(f"{ip}\t{db}")
    context = text[max(0, at - 300): at + 200] if stale else ""
    reports = [e["event"] for e in d.logs() if e.get("container_name") == evil
               and e.get("level") in ("warning", "error")]  # fmt: skip
    results.update(
        fault="hosts file filled to just under max_hosts_bytes (1 MiB)",
        tried=1, survived=int(d.alive() and not stale), data_lost=int(stale),
        file_bytes=len(filler), size_with_block=size_with_block, block_written=had_block,
        stale_line_after_target_stopped=stale, reports=reports, stale_context=context,
        stale_offset=at,
    )  # fmt: skip
    assert d.alive()
    # Whether the block fitted or was left out, the daemon never takes the file past the
    # limit (it could not read such a file back to update it).
    assert size_with_block <= limit, (size_with_block, had_block)
    assert not stale, (
        f"the stopped target's line stayed ({size_with_block} bytes with the block, limit "
        f"{limit}); reports: {reports}; around it: {context!r}"
    )


def test_container_writing_its_file_in_pieces_leaves_no_block_debris(
    containers, daemon, results, wait_until
):
    """A process in the container rewrites its /etc/hosts in pieces (one open, many
    writes, as stdio does past its 4 KiB buffer or a shell loop redirected once), slowly
    enough for the daemon to react in between. The daemon must not leave pieces of its
    block among the container's lines: such a piece holds a link line that no later write
    removes, a stale address once the target moves."""
    db = containers.run("db")
    evil = containers.run("evil", labels={LINKS: db})
    path = containers.hosts_path(evil)
    d = daemon.start(level="info")
    ip = containers.ip(db)
    wait_until(block_is(path, [line(ip, db)]))
    pieces = 40
    containers.exec(evil, "sh", "-c", f"i=0; while [ $i -lt {pieces} ]; do "
                    "printf '10.77.0.%d\\thost%d\\n' $i $i; i=$((i+1)); sleep 0.02; "
                    "done > /etc/hosts")  # fmt: skip
    own = [f"10.77.0.{i}\thost{i}" for i in range(pieces)]
    settled = wait_until(block_is(path, [line(ip, db)]), what="one block after the writes")
    outside_lines = [ln for ln in split(settled)[0].splitlines() if ln.strip()]
    debris = [ln for ln in outside_lines if ln not in own]
    lost = [ln for ln in own if ln not in outside_lines]
    containers.stop(db)
    gone = wait_until(block_is(path, []), what="the block gone with the target")
    stale = f"{ip}\t{db}" in gone
    results.update(
        fault="container rewrites its hosts file in pieces while the daemon writes",
        tried=1, pieces=pieces, survived=int(d.alive() and not (lost or debris or stale)),
        data_lost=len(lost), container_lines_lost=lost, debris_lines=debris,
        stale_line_after_target_stopped=stale,
    )  # fmt: skip
    assert d.alive()
    assert not debris and not stale, (
        f"pieces of the block left among the container's lines: {debris}; "
        f"stale link line after the target stopped: {stale}"
    )
    assert not lost, f"the container's own lines lost: {lost}"
