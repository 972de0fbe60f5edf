"""How the hosts file is written: in place, only when needed, repaired, junk-proof."""

from __future__ import annotations

import os
import time

import pytest

from .util import LINKS, begins, block_is, line, outside, read, split

pytestmark = pytest.mark.engine


def test_writes_in_place_and_the_container_sees_them(containers, daemon, wait_until):
    db = containers.run("db")
    db2 = containers.name("db2")
    web = containers.run("web", labels={LINKS: f"{db} {db2}"})
    path = containers.hosts_path(web)
    inode = os.stat(path).st_ino
    daemon.start()
    db_line = line(containers.ip(db), db)

    wait_until(block_is(path, [db_line]))
    assert os.stat(path).st_ino == inode
    assert containers.hosts_bytes(web) == path.read_bytes()

    containers.run("db2")
    db2_line = line(containers.ip(db2), db2)
    wait_until(block_is(path, [db_line, db2_line]))
    assert os.stat(path).st_ino == inode
    assert db2_line in containers.hosts(web).splitlines()

    containers.rm(db2)
    wait_until(block_is(path, [db_line]))
    assert os.stat(path).st_ino == inode
    assert split(containers.hosts(web))[1] == [db_line]


def test_no_write_when_nothing_changed(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: db})
    plain = containers.run("plain")
    path, plain_path = containers.hosts_path(web), containers.hosts_path(plain)
    d = daemon.start(resync_interval=1)
    wait_until(block_is(path, [line(containers.ip(db), db)]))
    time.sleep(0.3)  # let any write already in flight land before taking the baseline

    def state(p):
        st = os.stat(p)
        return st.st_ino, st.st_mtime_ns, st.st_size, p.read_bytes()

    before, plain_before = state(path), state(plain_path)
    # A one-shot reconcile finds nothing to do ...
    result = daemon.sync(resync_interval=1)
    assert result.returncode == 0, result.stderr
    # ... and neither do the daemon's periodic resyncs (interval 1 s).
    time.sleep(2.5)
    assert state(path) == before
    assert state(plain_path) == plain_before
    assert d.alive()


def _rewrite_in_place(path, data: bytes) -> None:
    """What another tool on the host might do: truncate and write the same inode."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def test_drift_from_the_host_side_is_repaired(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data"})
    path = containers.hosts_path(web)
    daemon.start()  # default resync_interval (60 s): repair must not wait for it
    expected = [line(containers.ip(db), "data", db)]
    text = wait_until(block_is(path, expected))
    docker_lines = outside(text)

    def repaired() -> str | bool:
        """The block is right and everything else is exactly Docker's lines again."""
        now = block_is(path, expected)()
        return now if now and outside(now) == docker_lines else False

    # A few rounds: the rewrites race with the daemon's own writes, and a repair must
    # never leave debris (such as NUL bytes from writing past a truncated end) behind.
    for _ in range(8):
        # The block is dropped (as Docker does when it rewrites the file) ...
        _rewrite_in_place(path, docker_lines.encode())
        wait_until(
            repaired,
            what="block re-applied after it was dropped, nothing else changed",
            show=path.read_bytes,
        )
        # ... or edited.
        forged = text.replace(containers.ip(db), "10.99.99.99")
        assert forged != text
        _rewrite_in_place(path, forged.encode())
        wait_until(
            repaired,
            what="block repaired after an edit, nothing else changed",
            show=path.read_bytes,
        )
    assert split(containers.hosts(web))[1] == expected
    assert outside(containers.hosts(web)) == docker_lines


def test_junk_written_by_a_container_does_not_break_the_daemon(containers, daemon, wait_until):
    db = containers.run("db")
    db2 = containers.name("db2")
    web = containers.run("web", labels={LINKS: f"{db} {db2}"})
    evil = containers.run("evil", labels={LINKS: db})
    d = daemon.start(resync_interval=1)
    db_line = line(containers.ip(db), db)
    evil_path, web_path = containers.hosts_path(evil), containers.hosts_path(web)
    text = wait_until(block_is(evil_path, [db_line]))
    wait_until(block_is(web_path, [db_line]))
    docker_lines = outside(text).encode()

    def write_own_hosts(data: bytes) -> None:
        containers.exec(evil, "sh", "-c", "cat > /etc/hosts", input=data)

    # Small junk: NUL bytes, invalid UTF-8, a forged BEGIN without END, a stray END.
    junk = (
        docker_lines
        + b"\x00\x00 nul\n\xff\xfe\xc3( not utf-8\n"
        + b"# END hostsyncd stray\n"
        + b"# BEGIN hostsyncd forged\n10.9.9.9\tfake\n"
    )
    write_own_hosts(junk)
    fixed = wait_until(block_is(evil_path, [db_line]), what="evil's block re-applied once")
    assert "10.9.9.9" not in fixed
    time.sleep(1.5)  # a resync or two later: still exactly one block
    assert split(read(evil_path))[2:] == (1, 1)

    # Big junk: more than 1 MiB, forged BEGIN lines without END.
    big = (
        docker_lines
        + b"# BEGIN hostsyncd forged\n"
        + (b"\x00junk \xff\xfe" * 15 + b"\n") * 12000
        + b"# BEGIN hostsyncd forged again\n10.9.9.9\tfake\n"
    )
    assert len(big) > 1 << 20
    write_own_hosts(big)
    time.sleep(2.5)
    assert d.alive()
    after = evil_path.read_bytes()
    assert len(after) <= len(big) + 4096, "the file grew: blocks piling up?"
    assert begins(read(evil_path)) <= 2, "blocks piled up"

    # Others are still served.
    containers.run("db2")
    wait_until(block_is(web_path, [db_line, line(containers.ip(db2), db2)]))
    time.sleep(1.5)
    assert evil_path.read_bytes().count(b"# BEGIN hostsyncd") <= 2
    assert d.alive()
