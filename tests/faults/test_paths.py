"""Path tricks under containers_root, done on the host side on real containers' files after
they start: a symlinked hosts file, a symlinked container directory, a hosts file with a
second (hard) link outside, a FIFO in place of the file, and stray directories whose names
are not container ids. Nothing outside containers_root may ever be written, the refusals
are reported once, the other containers are served, and the tricked ones converge once
their paths are restored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from integration.util import LINKS, block_is, line, mentions

pytestmark = pytest.mark.engine

SENTINEL = b"127.0.0.1\tlocalhost\n# BEGIN hostsyncd (sentinel)\n10.9.9.9\tstale\n"


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (inode, mtime_ns, sha256), without following symlinks."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, digest)
    return out


def test_symlinks_hardlinks_fifos_and_stray_dirs_never_lead_outside(
    engine, containers, daemon, results, wait_until
):
    root = Path(engine.containers_root)
    # Outside containers_root, but on its mount (dockerd bind-mounts its data root onto
    # itself), so that a hard link can reach it. Removed at the end.
    outside = root.parent / f"faults-outside-{containers.prefix.strip('-')}"
    outside.mkdir()
    (outside / "dir").mkdir()
    for p in (outside / "sentinel", outside / "dir" / "hosts"):
        p.write_bytes(SENTINEL)
    db, db2 = containers.run("db"), containers.name("db2")
    names = ["symfile", "symdir", "hardlink", "fifo", "good"]
    deps = {n: containers.run(n, labels={LINKS: f"{db} {db2}"}) for n in names}
    ids = {n: containers.id(dep) for n, dep in deps.items()}
    d = daemon.start(resync_interval=1, level="info")
    ip = containers.ip(db)
    for dep in deps.values():
        wait_until(block_is(containers.hosts_path(dep), [line(ip, db)]))

    # Stray entries in containers_root: no container has these ids.
    strays = [f"not-a-container-{secrets.token_hex(4)}", secrets.token_hex(32)[:63],
              secrets.token_hex(32).upper(), secrets.token_hex(32)]  # fmt: skip
    for i, stray in enumerate(strays):
        if i == len(strays) - 1:
            os.symlink(outside / "dir", root / stray)  # 64 hex digits, leading outside
        else:
            (root / stray).mkdir()
            (root / stray / "hosts").write_bytes(SENTINEL)
    stray_before = {s: (root / s / "hosts").read_bytes() for s in strays}

    # The tricks, on the host side, after the containers started.
    files = {n: root / ids[n] / "hosts" for n in names}
    os.rename(files["symfile"], files["symfile"].with_name("hosts.real"))
    os.symlink(outside / "sentinel", files["symfile"])
    os.rename(root / ids["symdir"], root / f"{ids['symdir']}.moved")
    os.symlink(outside / "dir", root / ids["symdir"])
    os.link(files["hardlink"], outside / "hardlink")
    os.rename(files["fifo"], files["fifo"].with_name("hosts.real"))
    os.mkfifo(files["fifo"])
    before = _tree(outside)
    restored = False

    def restore() -> None:
        os.unlink(files["symfile"])
        os.rename(files["symfile"].with_name("hosts.real"), files["symfile"])
        os.unlink(root / ids["symdir"])
        os.rename(root / f"{ids['symdir']}.moved", root / ids["symdir"])
        os.unlink(outside / "hardlink")
        os.unlink(files["fifo"])
        os.rename(files["fifo"].with_name("hosts.real"), files["fifo"])

    try:
        containers.run("db2")  # every dependent now wants a second line
        ip2 = containers.ip(db2)
        want = [line(ip, db), line(ip2, db2)]
        wait_until(block_is(containers.hosts_path(deps["good"]), want),
                   what="the untricked dependent served")  # fmt: skip
        time.sleep(3.5)  # resyncs and retries (retry_interval 2 s)
        after = _tree(outside)
        assert d.alive()
        logs = d.logs()
        reports = {n: len([e for e in logs if e.get("container_name") == deps[n]
                           and e.get("level") in ("warning", "error")
                           and not mentions(e, "resolved")])
                   for n in names}  # fmt: skip
        inside_seen = {n: containers.hosts(deps[n]) for n in ("symfile", "symdir", "hardlink")}
        restore()
        restored = True
        t0 = time.monotonic()
        for dep in deps.values():
            wait_until(block_is(containers.hosts_path(dep), want), timeout=6,
                       what=f"{dep} converged once its path is restored")  # fmt: skip
        recovered = time.monotonic() - t0
    finally:
        if not restored:
            restore()
        shutil.rmtree(outside)
        for stray in strays:
            p = root / stray
            if p.is_symlink():
                p.unlink()
            else:
                (p / "hosts").unlink()
                p.rmdir()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    stray_changed = [s for s in strays if stray_before[s] != SENTINEL]
    results.update(
        fault="symlinked/hard-linked/FIFO hosts paths and stray dirs in containers_root",
        tried=len(names) - 1 + len(strays), survived=len(names) - 1 + len(strays),
        data_lost=len(changed) + len(stray_changed),
        outside_files_changed=changed, reports_per_container=reports,
        recovered_after_restore_s=round(recovered, 3),
    )  # fmt: skip
    assert not changed, f"files outside containers_root changed: {changed}"
    assert not stray_changed
    for n in ("symfile", "symdir", "hardlink"):
        assert f"{ip}\t{db}" in inside_seen[n] and db2 not in inside_seen[n], inside_seen[n]
    assert reports == {"symfile": 1, "symdir": 1, "hardlink": 1, "fifo": 1, "good": 0}, reports
