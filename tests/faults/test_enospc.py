"""A full disk under a dependent's hosts file (ENOSPC).

The dependent's container directory is made a 256 KiB tmpfs (with the dependent stopped,
its files are copied into a tmpfs mounted over `<containers_root>/<id>`, and it is started
again so that Docker writes its hosts file there), and the tmpfs is filled up. Then a
second target starts whose lines grow the block by more than a page (16 long aliases), so
the write needs space that is not there. The file must keep its content byte for byte, the
error must be logged once, and once space is free again the write must be retried and land
within the retry's backoff: `sync.retry_interval` (2 s by default) after the first failure,
doubling with each further one, so a disk that stays full is not tried in a tight rhythm.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from integration.util import LINKS, block_is, line, mentions

pytestmark = pytest.mark.engine

ALIASES = 16
RETRY = 2.0
# Failures at 0, 2 and 6 s (the interval doubling): the disk is freed at about 6.5 s, and
# the retry due at 14 s lands, 8 s (4 intervals) at most after the space came back.
RECOVERY_BOUND = 4 * RETRY


def _long_alias(i: int) -> str:
    """A valid host name of 245 characters: 4 labels of 60."""
    return f"a{i:02d}" + "a" * 57 + "." + ".".join(["b" * 60] * 3)


def _fill(directory: Path) -> int:
    """Write a filler file until the file system is full; returns its size."""
    size = 0
    with open(directory / "filler", "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        while True:
            try:
                size += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return size


def test_full_disk_keeps_the_file_logs_once_and_retries(
    engine, containers, daemon, results, tool, wait_until, tmp_path
):
    mount, umount = tool("mount"), tool("umount")
    dockerd = engine.pid()
    assert dockerd is not None
    assert os.readlink(f"/proc/{dockerd}/ns/mnt") == os.readlink("/proc/self/ns/mnt"), (
        "dockerd runs in another mount namespace: a tmpfs mounted here would not be seen"
    )
    db1, db2 = containers.run("db1"), containers.name("db2")
    aliases = [_long_alias(i) for i in range(ALIASES)]
    dep = containers.run("dep", labels={LINKS: " ".join([db1, *(f"{db2}:{a}" for a in aliases)])})
    directory = Path(engine.containers_root) / containers.id(dep)
    path = directory / "hosts"
    d = daemon.start(level="info")  # retry_interval: the default, 2 s
    wait_until(block_is(path, [line(containers.ip(db1), db1)]))

    # The dependent's directory becomes a tiny tmpfs, with the same files in it.
    containers.stop(dep)
    stage = tmp_path / "stage"
    # Docker 26 and newer may be writing a `.tmp-config.v2.json*` (then renamed) here even
    # now: such a file can vanish mid-copy, and is no part of the directory's state.
    shutil.copytree(directory, stage, symlinks=True, ignore=shutil.ignore_patterns(".tmp-*"))
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=256k,mode=0710", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    mounted = True
    filler = directory / "filler"
    try:
        shutil.copytree(stage, directory, symlinks=True, dirs_exist_ok=True)
        containers.start(dep)
        before = wait_until(block_is(path, [line(containers.ip(db1), db1)])).encode()
        assert containers.hosts_bytes(dep) == before, "the container does not see the tmpfs"
        filled = _fill(directory)
        assert path.read_bytes() == before

        # The change that needs more space than there is.
        containers.run("db2")
        failed = d.wait_log(
            lambda e: e.get("level") == "error" and e.get("container_name") == dep,
            timeout=10, what="the write error logged for the dependent",
        )  # fmt: skip
        time.sleep(3 * RETRY + 0.5)  # three more retries fail the same way
        errors = [e for e in d.logs()
                  if e.get("level") == "error" and mentions(e, dep)]  # fmt: skip
        kept = path.read_bytes()
        seen = containers.hosts_bytes(dep)
        assert d.alive()
        assert kept == before, "the file changed while the disk was full"
        assert seen == before
        assert len(errors) == 1, errors

        # Space again: the retry lands.
        freed = time.monotonic()
        filler.unlink()
        lines = [line(containers.ip(db1), db1)] + [
            line(containers.ip(db2), alias, db2) for alias in aliases
        ]
        wait_until(block_is(path, lines), timeout=RECOVERY_BOUND + 3, what="the retried write")
        recovered = time.monotonic() - freed
        assert containers.hosts_bytes(dep) == path.read_bytes()
        # The write error is said to be over once the retry lands (logged just after the
        # write, so waited for rather than read once).
        resolved = [d.wait_log(lambda e: e["event"] == "problem resolved"
                               and e.get("container_name") == dep,
                               timeout=5, what="the write error resolved")]  # fmt: skip
        results.update(
            fault="ENOSPC while writing (tmpfs filled up)",
            tried=1, survived=1 if d.alive() else 0,
            data_lost=0 if kept == before else 1,
            error_message=failed.get("event"),
            error_entries=len(errors),
            filler_bytes=filled,
            recovered_after_free_s=round(recovered, 3),
            problem_resolved_logged=bool(resolved),
        )  # fmt: skip
        assert recovered <= RECOVERY_BOUND + 1.5
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        containers.docker("stop", "-t", "0", dep, check=False)
        if mounted:
            done = subprocess.run([umount, str(directory)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run([umount, "-l", str(directory)], check=False)
