"""The in-place hosts file writer, on a tmp dir standing in for containers_root."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from hostsyncd.core.hostsblock import render_block
from hostsyncd.core.model import HostLine
from hostsyncd.core.reconcile import transform
from hostsyncd.writer import HostsFileError, HostsFileGone, HostsWriter, WriteResult

CID = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4
BASE = (
    b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    b"172.17.0.3\t0123456789ab\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "containers"
    root.mkdir()
    return root


def make_hosts(root: Path, container_id: str = CID, content: bytes = BASE) -> Path:
    (root / container_id).mkdir(exist_ok=True)
    path = root / container_id / "hosts"
    path.write_bytes(content)
    return path


def to(content: bytes):
    return lambda _before: content


def test_read(root: Path) -> None:
    make_hosts(root)
    assert HostsWriter(root).read(CID) == BASE


def test_path(root: Path) -> None:
    assert HostsWriter(root).path(CID) == root / CID / "hosts"


def test_update_writes_in_place(root: Path) -> None:
    path = make_hosts(root)
    inode = path.stat().st_ino
    new = BASE + b"10.0.0.2\tdb\n"
    seen: list[bytes] = []

    def transform(before: bytes) -> bytes:
        seen.append(before)
        return new

    result = HostsWriter(root).update(CID, transform)
    assert seen == [BASE]
    assert result == WriteResult(BASE, new)
    assert result.changed
    assert path.read_bytes() == new
    assert path.stat().st_ino == inode
    assert sorted(p.name for p in (root / CID).iterdir()) == ["hosts"]  # no temp files


def test_no_write_when_content_unchanged(root: Path) -> None:
    path = make_hosts(root)
    before = path.stat()
    time.sleep(0.05)  # far above the file system's timestamp granularity
    result = HostsWriter(root).update(CID, lambda content: bytes(content))
    after = path.stat()
    assert not result.changed
    assert (after.st_mtime_ns, after.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)
    assert path.read_bytes() == BASE
    # Control: the same wait followed by a real change does move the timestamps, so the
    # check above can fail.
    time.sleep(0.05)
    HostsWriter(root).update(CID, to(BASE + b"x\n"))
    assert path.stat().st_mtime_ns != before.st_mtime_ns


def test_shrinking_leaves_no_stale_bytes(root: Path) -> None:
    long = BASE + b"".join(b"10.0.0.%d\thost%d\n" % (i, i) for i in range(50))
    path = make_hosts(root, content=long)
    inode = path.stat().st_ino
    HostsWriter(root).update(CID, to(b"short\n"))
    assert path.read_bytes() == b"short\n"
    assert path.stat().st_size == len(b"short\n")
    assert path.stat().st_ino == inode


def test_shrinking_to_nothing(root: Path) -> None:
    path = make_hosts(root)
    HostsWriter(root).update(CID, to(b""))
    assert path.read_bytes() == b""


def test_growing(root: Path) -> None:
    path = make_hosts(root, content=b"")
    big = b"".join(b"10.0.%d.%d\th%d\n" % (i // 250, i % 250, i) for i in range(3000))
    HostsWriter(root).update(CID, to(big), defer_empty=False)
    assert path.read_bytes() == big


def test_an_empty_file_is_left_for_a_moment(root: Path) -> None:
    """Empty is what Docker's rewrite (truncate, then write) looks like halfway: writing
    then would clobber Docker's lines. The writer says it raced, and leaves the file."""
    path = make_hosts(root, content=b"")
    result = HostsWriter(root).update(CID, to(b"10.0.0.2\tdb\n"))
    assert result.raced
    assert not result.changed
    assert path.read_bytes() == b""


def test_a_file_that_moves_under_the_read_is_not_written(root: Path) -> None:
    """Someone rewrites the file after our last read but before our write: the writer sees
    the size and mtime move, leaves the file to them, and says it raced."""
    from hostsyncd import writer as writer_module

    path = make_hosts(root, content=BASE)
    real_stamp = writer_module._stamp
    calls = [0]

    def meddling_stamp(fd: int) -> tuple[int, int, int, int]:
        calls[0] += 1
        # Calls 1-3: the read-only look (around the read, and after it); 4-5: the read
        # through the read-write descriptor; 6: the check right before writing.
        if calls[0] == 6:
            path.write_bytes(BASE + b"10.9.9.9\tother\n")
        return real_stamp(fd)

    with mock.patch.object(writer_module, "_stamp", meddling_stamp):
        result = HostsWriter(root).update(CID, to(BASE + b"10.0.0.2\tdb\n"))
    assert calls[0] == 6
    assert result.raced
    assert path.read_bytes() == BASE + b"10.9.9.9\tother\n"

def test_symlinked_hosts_file_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret\n")
    (root / CID).mkdir()
    (root / CID / "hosts").symlink_to(outside)
    writer = HostsWriter(root)
    with pytest.raises(HostsFileError) as info:
        writer.update(CID, to(b"pwned\n"))
    assert not isinstance(info.value, HostsFileGone)
    assert "symlink" in info.value.reason
    with pytest.raises(HostsFileError):
        writer.read(CID)
    assert outside.read_bytes() == b"secret\n"


def test_symlinked_container_directory_is_refused(root: Path, tmp_path: Path) -> None:
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "hosts").write_bytes(b"secret\n")
    (root / CID).symlink_to(outside_dir, target_is_directory=True)
    writer = HostsWriter(root)
    with pytest.raises(HostsFileError) as info:
        writer.update(CID, to(b"pwned\n"))
    assert not isinstance(info.value, HostsFileGone)
    with pytest.raises(HostsFileError):
        writer.read(CID)
    assert (outside_dir / "hosts").read_bytes() == b"secret\n"


def test_dangling_symlink_is_refused_not_created(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "would-be-created"
    (root / CID).mkdir()
    (root / CID / "hosts").symlink_to(target)
    with pytest.raises(HostsFileError):
        HostsWriter(root).update(CID, to(b"x\n"))
    assert not target.exists()


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "..",
        ".",
        "",
        CID.upper(),
        CID[:-1],
        CID + "0",
        "g" * 64,
        "../" + CID[3:],
        CID[:32] + "/" + CID[33:],
        CID + "\n",
        "/" + CID[1:],
    ],
)
def test_bad_container_ids_are_refused(root: Path, tmp_path: Path, bad_id: str) -> None:
    # Something to find should the id be used as a path.
    (tmp_path / "hosts").write_bytes(b"secret\n")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "hosts").write_bytes(b"secret\n")
    make_hosts(root)
    writer = HostsWriter(root)
    calls: list[bytes] = []
    with pytest.raises(HostsFileError) as info:
        writer.update(bad_id, lambda before: calls.append(before) or b"pwned\n")
    assert not isinstance(info.value, HostsFileGone)
    with pytest.raises(HostsFileError):
        writer.read(bad_id)
    assert calls == []
    assert (tmp_path / "hosts").read_bytes() == b"secret\n"
    assert (tmp_path / "x" / "hosts").read_bytes() == b"secret\n"
    assert (root / CID / "hosts").read_bytes() == BASE


def test_file_larger_than_max_bytes_is_refused_without_reading_it_all(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_bytes = 4096
    path = make_hosts(root, content=b"")
    with path.open("r+b") as f:
        f.truncate(64 << 20)  # sparse: costs no disk
    read = [0]
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        read[0] += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    writer = HostsWriter(root, max_bytes=max_bytes)
    calls: list[bytes] = []
    with pytest.raises(HostsFileError) as info:
        writer.update(CID, lambda before: calls.append(before) or b"x\n")
    assert "larger" in info.value.reason
    with pytest.raises(HostsFileError):
        writer.read(CID)
    assert calls == []
    assert 0 < read[0] <= 2 * (max_bytes + 1)
    assert path.stat().st_size == 64 << 20


def test_file_at_max_bytes_is_fine(root: Path) -> None:
    content = b"#" * 4095 + b"\n"
    make_hosts(root, content=content)
    assert HostsWriter(root, max_bytes=4096).read(CID) == content


def test_missing_hosts_file_is_gone(root: Path) -> None:
    (root / CID).mkdir()
    writer = HostsWriter(root)
    with pytest.raises(HostsFileGone):
        writer.read(CID)
    with pytest.raises(HostsFileGone):
        writer.update(CID, to(b"x\n"))
    assert not (root / CID / "hosts").exists()  # not created


def test_missing_container_directory_is_gone(root: Path) -> None:
    with pytest.raises(HostsFileGone):
        HostsWriter(root).update(OTHER, to(b"x\n"))
    assert not (root / OTHER).exists()


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HostsFileError):
        HostsWriter(tmp_path / "nope").read(CID)


def test_hard_linked_hosts_file_is_refused(root: Path, tmp_path: Path) -> None:
    path = make_hosts(root)
    os.link(path, tmp_path / "hardlink")
    with pytest.raises(HostsFileError) as info:
        HostsWriter(root).update(CID, to(b"pwned\n"))
    assert not isinstance(info.value, HostsFileGone)
    assert (tmp_path / "hardlink").read_bytes() == BASE


def test_fifo_hosts_file_is_refused_without_blocking(root: Path) -> None:
    (root / CID).mkdir()
    os.mkfifo(root / CID / "hosts")
    with pytest.raises(HostsFileError):
        HostsWriter(root).read(CID)


def test_directory_hosts_file_is_refused(root: Path) -> None:
    (root / CID / "hosts").mkdir(parents=True)
    with pytest.raises(HostsFileError):
        HostsWriter(root).update(CID, to(b"x\n"))


def test_error_carries_container_id_and_reason(root: Path) -> None:
    (root / CID).mkdir()
    with pytest.raises(HostsFileGone) as info:
        HostsWriter(root).read(CID)
    assert info.value.container_id == CID
    assert info.value.reason
    assert CID[:12] in str(info.value)


def race_reader(
    root: Path, long: bytes, short: bytes, updates: int, stop_at_first: bool = True
) -> tuple[int, list[bytes]]:
    """A thread reads the file over and over while `updates` writes alternate long/short.

    Returns (reads done, reads that were neither content). Stops early at the first bad read.
    """
    path = make_hosts(root, content=short)
    allowed = {long.rstrip(b"\n"), short.rstrip(b"\n")}
    done = threading.Event()
    bad: list[bytes] = []
    reads = [0]

    def reader() -> None:
        while not done.is_set():
            with path.open("rb") as f:
                data = f.read()
            reads[0] += 1
            if not data or data.rstrip(b"\n") not in allowed:
                bad.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    writer = HostsWriter(root)
    try:
        for i in range(updates):
            writer.update(CID, to(long if i % 2 == 0 else short))
            time.sleep(0.0005)
            if bad and stop_at_first:
                break
    finally:
        done.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    if not bad or not stop_at_first:
        assert path.read_bytes() == (long if updates % 2 else short)
    return reads[0], bad


def hosts_content(n_lines: int) -> bytes:
    return BASE + b"# BEGIN hostsyncd\n" + b"".join(
        b"10.0.%d.%d\tservice-%d.example replica-%d\n" % (i // 200, i % 200, i, i)
        for i in range(n_lines)
    ) + b"# END hostsyncd\n"


def test_a_reader_never_sees_an_empty_file_and_almost_never_a_torn_one(root: Path) -> None:
    """Within one page. The writer never empties or shortens the file (see the multi-page
    test for the hard guarantees). A read that races the kernel's copy of the changed
    bytes can still mix old and new bytes there: the write keeps that region to the bytes
    that differ, so such reads are rare (none in a million in the benchmark), not
    impossible. This hammers 300 back-to-back rewrites and bounds the rate."""
    long = hosts_content(40)
    assert 1000 < len(long) < 4096  # within one page
    reads, bad = race_reader(root, long, BASE, updates=300, stop_at_first=False)
    assert reads >= 50, reads  # the reader did run alongside the writer
    assert not [b for b in bad if not b], "an empty read"
    assert all(b.startswith(BASE) for b in bad), "the unchanged prefix was rewritten"
    assert len(bad) <= max(2, reads // 500), f"{len(bad)} of {reads} reads torn"


def test_a_multi_page_rewrite_never_empties_shortens_or_touches_the_prefix(root: Path) -> None:
    """A ~42 KB file (a thousand links) alternating with a short one. The kernel copies a
    write into the page cache without excluding readers, so a reader racing a change that
    spans pages can see old and new pages mixed: no in-place write can prevent that, and the
    README says so. What the writer does guarantee: the file is never empty, never shorter
    than the shorter of the two contents (it grows before it is overwritten and shrinks
    only after), and the unchanged prefix (Docker's lines) is never rewritten at all."""
    long = hosts_content(1000)
    assert len(long) > 10 * 4096
    path = make_hosts(root, content=BASE)
    done = threading.Event()
    bad: list[bytes] = []
    reads = [0]

    def reader() -> None:
        while not done.is_set():
            data = path.read_bytes()
            reads[0] += 1
            if len(data) < len(BASE) or not data.startswith(BASE):
                bad.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    writer = HostsWriter(root)
    try:
        for i in range(600):
            writer.update(CID, to(long if i % 2 == 0 else BASE))
    finally:
        done.set()
        thread.join(timeout=10)
    assert reads[0] >= 50, reads
    assert not bad, f"{len(bad)} bad reads of {reads[0]}; first: {bad[0][:120]!r}"
    assert path.read_bytes() == BASE


def test_a_growing_change_extends_with_blank_lines_before_overwriting(root: Path) -> None:
    """A change that is not a pure append grows first, with newlines: a reader that
    catches the file between the steps sees the old content followed by blank lines,
    which resolvers ignore."""
    old = hosts_content(1)
    new = hosts_content(3).replace(b"service-0", b"renamed-0")
    path = make_hosts(root, content=old)
    seen: list[bytes] = []
    real_pwrite = os.pwrite

    def spy(fd: int, data: bytes, offset: int) -> int:
        seen.append(path.read_bytes())
        return real_pwrite(fd, data, offset)

    real_pwritev = os.pwritev

    def spy_append(fd: int, buffers: list[Any], offset: int, flags: int) -> int:
        seen.append(path.read_bytes())
        return real_pwritev(fd, buffers, offset, flags)

    with mock.patch("hostsyncd.writer.os.pwrite", spy), \
            mock.patch("hostsyncd.writer.os.pwritev", spy_append):
        HostsWriter(root).update(CID, to(new))
    assert seen[0] == old  # the blank lines go in first (appended), then the overwrite
    assert seen[1] == old + b"\n" * (len(new) - len(old))
    assert path.read_bytes() == new


@pytest.mark.parametrize("grow", [True, False])
def test_a_line_appended_while_the_file_is_rewritten_is_neither_overwritten_nor_cut(
        root: Path, grow: bool) -> None:
    """Docker appends its entry on a network connect without a lock. Appended right after
    our last look at the file (here: as our first write begins), it stays whole; the file
    is left for the next look, which builds on it. CI saw a connect's line lost to the
    padding once written at the end we had read."""
    old = hosts_content(2)
    new = hosts_content(3 if grow else 1).replace(b"service-0", b"renamed-0")
    path = make_hosts(root, content=old)
    docker_line = b"10.233.64.3\t0d5c7c097200\n"
    real = {"pwrite": os.pwrite, "pwritev": os.pwritev}
    appended: list[bool] = []

    def docker_appends() -> None:
        if not appended:
            appended.append(True)
            with path.open("ab") as f:
                f.write(docker_line)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        docker_appends()
        return real["pwrite"](fd, data, offset)

    def pwritev(fd: int, buffers: list[Any], offset: int, flags: int) -> int:
        docker_appends()
        return real["pwritev"](fd, buffers, offset, flags)

    writer = HostsWriter(root)
    with mock.patch("hostsyncd.writer.os.pwrite", pwrite), \
            mock.patch("hostsyncd.writer.os.pwritev", pwritev):
        result = writer.update(CID, to(new))
    assert appended and result.raced
    assert docker_line in path.read_bytes()
    # The next look builds on what is there: Docker's line kept, the block at the end.
    writer.update(CID, to(new.replace(b"# BEGIN", docker_line + b"# BEGIN")))
    final = path.read_bytes()
    assert final.count(docker_line) == 1
    assert final.rstrip(b"\n").endswith(b"# END hostsyncd")


def test_adding_the_block_is_one_append_and_removing_it_one_truncate(root: Path) -> None:
    """The common changes never overwrite a byte a reader may be reading: the block is
    appended (the new size is published only once the bytes are in) or truncated away."""
    path = make_hosts(root, content=BASE)
    with_block = hosts_content(2)
    calls: list[tuple[str, int]] = []
    real_pwrite, real_pwritev, real_ftruncate = os.pwrite, os.pwritev, os.ftruncate

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(("pwrite", offset))
        return real_pwrite(fd, data, offset)

    def pwritev(fd: int, buffers: list, offset: int, flags: int = 0) -> int:
        calls.append(("append" if flags & os.RWF_APPEND else "pwritev", offset))
        return real_pwritev(fd, buffers, offset, flags)

    def ftruncate(fd: int, length: int) -> None:
        calls.append(("ftruncate", length))
        real_ftruncate(fd, length)

    with mock.patch("hostsyncd.writer.os.pwrite", pwrite), \
            mock.patch("hostsyncd.writer.os.pwritev", pwritev), \
            mock.patch("hostsyncd.writer.os.ftruncate", ftruncate):
        HostsWriter(root).update(CID, to(with_block))
        assert calls == [("append", -1)]
        assert path.read_bytes() == with_block
        calls.clear()
        HostsWriter(root).update(CID, to(BASE))
        assert calls == [("ftruncate", len(BASE))]
        assert path.read_bytes() == BASE


# -- files where the engine says (Podman's HostsPath), confined to the configured roots ----


def podman_layout(tmp_path: Path, container_id: str = CID) -> tuple[Path, Path]:
    """(runroot, hosts file) the way Podman lays them out: the path is not <root>/<id>/hosts."""
    runroot = tmp_path / "run"
    userdata = runroot / "vfs-containers" / container_id / "userdata"
    userdata.mkdir(parents=True)
    (userdata / "hosts").write_bytes(BASE)
    return runroot, userdata / "hosts"


def test_writes_the_located_path_under_a_root(tmp_path: Path) -> None:
    runroot, hosts = podman_layout(tmp_path)
    inode = hosts.stat().st_ino
    writer = HostsWriter(tmp_path / "unused", roots=[runroot], locate=lambda _cid: str(hosts))
    writer.update(CID, lambda before: before + b"10.0.0.9\tdb\n")
    assert hosts.read_bytes() == BASE + b"10.0.0.9\tdb\n"
    assert hosts.stat().st_ino == inode  # in place, as ever
    assert writer.path(CID) == hosts


@pytest.mark.parametrize("where", ["outside", "dotdot", "relative", "root_itself"])
def test_a_located_path_outside_the_roots_is_refused(tmp_path: Path, where: str) -> None:
    runroot, _ = podman_layout(tmp_path)
    outside = tmp_path / "elsewhere" / "hosts"
    outside.parent.mkdir()
    outside.write_bytes(BASE)
    path = {
        "outside": str(outside),
        "dotdot": f"{runroot}/../elsewhere/hosts",
        "relative": "elsewhere/hosts",
        "root_itself": str(runroot),
    }[where]
    writer = HostsWriter(tmp_path / "unused", roots=[runroot], locate=lambda _cid: path)
    with pytest.raises(HostsFileError) as caught:
        writer.update(CID, lambda before: before + b"10.0.0.9\tdb\n")
    assert caught.value.container_id == CID
    assert "not written" in caught.value.reason
    assert outside.read_bytes() == BASE


def test_a_symlinked_directory_below_the_root_is_refused(tmp_path: Path) -> None:
    runroot, hosts = podman_layout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hosts").write_bytes(BASE)
    userdata = hosts.parent
    for name in os.listdir(userdata):
        os.unlink(userdata / name)
    userdata.rmdir()
    userdata.symlink_to(elsewhere)  # a swap of the directory for a link out of the root
    writer = HostsWriter(tmp_path / "unused", roots=[runroot], locate=lambda _cid: str(hosts))
    with pytest.raises(HostsFileError, match="symlink"):
        writer.update(CID, lambda before: before + b"10.0.0.9\tdb\n")
    assert (elsewhere / "hosts").read_bytes() == BASE


def test_the_default_stays_containers_root_id_hosts(root: Path) -> None:
    path = make_hosts(root)
    writer = HostsWriter(root)
    writer.update(CID, lambda before: before + b"10.0.0.9\tdb\n")
    assert path.read_bytes().endswith(b"10.0.0.9\tdb\n")


def test_a_file_as_the_writer_left_it_is_known_without_a_read(root: Path) -> None:
    """Our own writes come back as write events: a file that still has the stamp the writer
    took after its write (or its last check) was written by no one since."""
    path = make_hosts(root)
    w = HostsWriter(root)
    assert not w.as_left(CID)  # never written or checked: unknown
    w.update(CID, to(BASE + b"10.0.0.2\tdb\n"))
    assert w.as_left(CID)
    with mock.patch("hostsyncd.writer.HostsWriter._read_bounded",
                    side_effect=AssertionError("as_left must not read")):
        assert w.as_left(CID)
    # Someone else writes, even the same bytes, in place or as a new file.
    time.sleep(0.02)
    same = path.read_bytes()
    with open(path, "r+b") as f:
        f.write(same)
    assert not w.as_left(CID)
    w.update(CID, to(BASE + b"10.0.0.2\tdb\n"))  # found right: the stamp is taken again
    assert w.as_left(CID)
    path.unlink()
    path.write_bytes(BASE + b"10.0.0.2\tdb\n")
    assert not w.as_left(CID)
    w.forget(CID)
    w.update(CID, to(BASE))
    path.unlink()
    assert not w.as_left(CID)  # gone: not as left


def test_a_write_that_someone_else_overlaps_is_not_taken_as_ours(root: Path) -> None:
    """Someone writes between our write and our look at the result, leaving the size as
    ours: the content is not what was written, so its write events are work."""
    from hostsyncd import writer as writer_module

    path = make_hosts(root, content=BASE)
    w = HostsWriter(root)
    real_write = writer_module.HostsWriter._write_in_place

    def then_docker(self, fd, cid, before, after) -> None:  # type: ignore[no-untyped-def]
        real_write(self, fd, cid, before, after)
        os.pwrite(fd, b"#", 0)  # same size, other bytes: only a read tells

    with mock.patch.object(writer_module.HostsWriter, "_write_in_place", then_docker):
        w.update(CID, to(BASE + b"10.0.0.2\tdb\n"))
    assert not w.as_left(CID)
    assert path.read_bytes().startswith(b"#")


def test_a_line_docker_appends_while_the_block_is_added_is_kept(root: Path) -> None:
    """Docker appends its own entry on a connect, unlocked, between our read and our write:
    the block is appended at the end the kernel finds, after Docker's line, never over it."""
    from hostsyncd import writer as writer_module

    path = make_hosts(root, content=BASE)
    real_reserve = writer_module._reserve

    def docker_appends(fd: int, length: int) -> None:
        with open(path, "ab") as f:
            f.write(b"10.1.0.5\t0123456789ab\n")
        real_reserve(fd, length)

    with mock.patch.object(writer_module, "_reserve", docker_appends):
        HostsWriter(root).update(CID, to(BASE + b"# BEGIN x\n10.0.0.2\tdb\n# END x\n"))
    assert path.read_bytes() == BASE + b"10.1.0.5\t0123456789ab\n" \
        b"# BEGIN x\n10.0.0.2\tdb\n# END x\n"


# --- a container rewriting its file without a lock (write, then truncate) ----------------
# Each case stages the race at one moment of our write; the next look must leave Docker's
# lines and the block, nothing else. Before the fix each left a file that merging no longer
# changed (the flood test's CI failure, tests/faults/test_lost_events.py).

def _ours(ip: str) -> bytes:
    return render_block([HostLine(ip, ("db",)), HostLine("10.0.0.3", ("data", "db"))])


def _apply(block: bytes, earlier: bytes = b"") -> Any:
    return transform(block, 1 << 20, [], earlier)


FORGED_BLOCK = b"# BEGIN hostsyncd\n10.9.9.9\tforged\n# END hostsyncd\n"


def _rewrite(path: Path, data: bytes) -> None:
    with path.open("r+b") as f:
        f.write(data)
        f.truncate()


@pytest.mark.parametrize("moment", ["pwritev", "pwrite"])
def test_a_rewrite_between_our_look_and_our_write_leaves_nothing_behind(
        root: Path, moment: str) -> None:
    """The container truncates to its own lines just before our padding is appended
    (which then lands after them: blank lines), or just before our overwrite (which then
    writes past the end: a hole of NULs, then the end of our block)."""
    block = _ours("10.0.0.2")
    path = make_hosts(root, content=BASE + FORGED_BLOCK)
    real = getattr(os, moment)
    done: list[bool] = []

    def racing(*args: Any) -> int:
        if not done:
            done.append(True)
            _rewrite(path, BASE)
        return real(*args)

    writer = HostsWriter(root)
    with mock.patch(f"hostsyncd.writer.os.{moment}", racing):
        writer.update(CID, _apply(block))
    assert done and path.read_bytes() != BASE + block
    writer.update(CID, _apply(block, block))
    assert path.read_bytes() == BASE + block


@pytest.mark.parametrize("moved", [False, True])
def test_a_rewrite_around_our_whole_write_leaves_nothing_behind(root: Path, moved: bool) -> None:
    """The container's write lands, ours reads and writes, its truncate lands: we saw its
    lines, then the end of our block whose BEGIN it overwrote; it cuts what we wrote. When
    the address moved at that moment, the end is the earlier block's."""
    earlier = _ours("10.0.0.2")
    block = _ours("10.0.0.7") if moved else earlier
    path = make_hosts(root, content=BASE + earlier)
    with path.open("r+b") as f:
        f.write(BASE + FORGED_BLOCK)
    assert path.read_bytes() == BASE + FORGED_BLOCK + earlier[len(FORGED_BLOCK):]
    writer = HostsWriter(root)
    writer.update(CID, _apply(block, earlier))
    with path.open("r+b") as f:
        f.truncate(len(BASE + FORGED_BLOCK))
    writer.update(CID, _apply(block, block))
    assert path.read_bytes() == BASE + block
