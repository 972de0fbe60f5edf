"""The only code that touches hosts files.

Docker bind-mounts `<containers_root>/<id>/hosts` into the container as a single file, so
the inode must never change: every write is in place. A file that grows is first extended
with newlines (ignored by resolvers); then the bytes that differ are written over the old
ones, padded with newlines to the old length; only then is the file truncated. A reader
therefore never sees an empty file or one that ends early.

Where a container's file is: `<containers_root>/<id>/hosts` on Docker; on Podman, wherever
the engine's `HostsPath` says (under its storage's runroot), handed in through `locate`.
Either way only paths under the configured roots are written, and the path below the root
is walked one component at a time with O_NOFOLLOW: no symlink anywhere below a root is
followed, so a container that swaps a directory for a symlink cannot steer a write out.

Imports: stats. (The kinds of failure it counts.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostsyncd.stats import WriteFailure

HOSTS_FILE = "hosts"
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_FALLOC_FL_KEEP_SIZE = 1
_STABLE_READ_TRIES = 5
_libc = ctypes.CDLL(None, use_errno=True)


class HostsFileError(Exception):
    """A hosts file that can't be read or written; `reason` is fit for a log line, `kind`
    for a count (metrics)."""

    def __init__(self, container_id: str, reason: str, err: int | None = None,
                 kind: WriteFailure = WriteFailure.IO) -> None:
        super().__init__(f"{reason} ({container_id[:12]})")
        self.container_id = container_id
        self.reason = reason
        self.errno = err
        self.kind = kind


class HostsFileGone(HostsFileError):
    """No hosts file (yet): the container is being created or removed. Not an error."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    before: bytes
    after: bytes
    # Another writer was at work: what is on disk may be neither; check again soon.
    raced: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


class HostsWriter:
    def __init__(
        self,
        containers_root: Path,
        max_bytes: int = 1 << 20,
        roots: Sequence[Path] | None = None,
        locate: Callable[[str], str] | None = None,
    ) -> None:
        """roots: the directories writes are confined to (default: containers_root alone).
        locate(container id) -> the absolute path of its hosts file, as the engine gives it
        (default: `<containers_root>/<id>/hosts`); may raise HostsFileError."""
        self.root = containers_root
        self.roots = tuple(roots) if roots else (containers_root,)
        self.locate = locate
        self.max_bytes = max_bytes
        # The start fast path writes from the watcher's thread while the daemon's loop may
        # be writing: each read-modify-write of a file must be whole.
        self._lock = threading.Lock()
        # Each file as it was when last written or found right: (inode, size, mtime, ctime).
        # The watcher reports our own writes too; a file that still has this stamp was
        # written by no one since, so its write event is no work (see as_left).
        self._left: dict[str, tuple[int, int, int, int]] = {}

    def path(self, container_id: str) -> Path:
        if self.locate is None:
            return self.root / container_id / HOSTS_FILE
        return Path(self.locate(container_id))

    def _confined(self, container_id: str) -> tuple[Path, tuple[str, ...]]:
        """(the root, the components below it) of the container's hosts file. A path that
        is not absolute, holds `..` or `.`, or lies outside every root is refused."""
        if self.locate is None:
            return self.root, (container_id, HOSTS_FILE)
        raw = self.locate(container_id)
        parts = raw.split("/")
        if not raw.startswith("/") or any(p in (".", "..") for p in parts) or "\0" in raw:
            raise HostsFileError(container_id, f"hosts file path {raw!r} is not a plain "
                                 "absolute path; not written", kind=WriteFailure.REFUSED)
        below = tuple(p for p in parts if p)
        for root in self.roots:
            top = root.parts[1:]  # without the leading "/"
            if len(below) > len(top) and below[: len(top)] == top:
                return root, below[len(top):]
        raise HostsFileError(
            container_id, f"hosts file {raw} is outside docker.hosts_roots "
            f"({', '.join(map(str, self.roots))}); not written", kind=WriteFailure.REFUSED)

    def as_left(self, container_id: str) -> bool:
        """Whether the file is as this writer last left it: its write events since were
        our own. A stat, not a read. The stamp is one the file had while it was read back
        as written (or found right), and from Linux 6.13 a change after a stat always gets
        a new ctime (multigrain timestamps); on older kernels a write of the same size in
        the same clock tick (a few ms) looks unchanged, and is found by the next write
        event or the resync."""
        with self._lock:
            left = self._left.get(container_id)
        if left is None:
            return False
        try:
            fd = self._open(container_id, os.O_RDONLY)
        except HostsFileError:
            return False
        try:
            return _stamp(fd) == left
        finally:
            os.close(fd)

    def forget(self, container_id: str) -> None:
        """The file is no longer managed: what was kept about it goes."""
        with self._lock:
            self._left.pop(container_id, None)

    def read(self, container_id: str) -> bytes:
        fd = self._open(container_id, os.O_RDONLY)
        try:
            return self._read_bounded(fd, container_id)
        finally:
            os.close(fd)

    def update(
        self,
        container_id: str,
        transform: Callable[[bytes], bytes],
        defer_empty: bool = True,
        expect_change: bool = False,
    ) -> WriteResult:
        """Rewrite the file as transform(current content); no write when that changes nothing.

        The check reads through a read-only descriptor: closing one opened for writing
        raises an inotify close-write event even when nothing was written, and the watcher
        would take that for drift and ask for another check, forever.

        Docker rewrites the file without a lock (truncate, then write), so this backs off
        instead of racing it: an empty file is most likely Docker between its two steps, and
        a file whose size or mtime moved while it was being read is read again. A file
        that stays empty (the container emptied it) is written once `defer_empty` is off. Whatever
        slips through is caught by `WriteResult.raced` and the watcher, and written again.
        """
        with self._lock:
            return self._update(container_id, transform, defer_empty, expect_change)

    def _update(
        self,
        container_id: str,
        transform: Callable[[bytes], bytes],
        defer_empty: bool,
        expect_change: bool,
    ) -> WriteResult:
        if not expect_change:
            fd = self._open(container_id, os.O_RDONLY)
            try:
                before, stamp, held = self._read_stable(fd, container_id)
            finally:
                os.close(fd)
            after = transform(before)
            if after == before:
                if held:
                    self._left[container_id] = stamp
                return WriteResult(before, after)
            if not before and defer_empty:
                return WriteResult(before, before, raced=True)
        else:
            # The caller knows the content changes (a link moved): one read-write open.
            before = b""
        fd = self._open(container_id, os.O_RDWR)
        try:
            current, stamp, _ = self._read_stable(fd, container_id)
            if expect_change or current != before:  # build on what is there now
                before, after = current, transform(current)
            if after == before:
                if _stamp(fd) == stamp:
                    self._left[container_id] = stamp
                return WriteResult(before, after)
            if (not before and defer_empty) or _stamp(fd) != stamp:
                return WriteResult(before, before, raced=True)
            self._write_in_place(fd, container_id, before, after)
            left = _stamp(fd)
            raced = left[1] != len(after)
            # Someone may have written at the same moment, leaving the size as ours: the
            # file is taken as we left it only while it reads back as written, so their
            # write's events still count as work.
            if not raced and os.pread(fd, len(after) + 1, 0) == after and _stamp(fd) == left:
                self._left[container_id] = left
            else:
                self._left.pop(container_id, None)
            return WriteResult(before, after, raced=raced)
        finally:
            os.close(fd)

    def _read_stable(self, fd: int, container_id: str
                     ) -> tuple[bytes, tuple[int, int, int, int], bool]:
        """The content, read again while a writer is seen to be changing it; with the stamp
        before the last read, and whether the file kept that stamp through it (the content
        is the file as of the stamp only then)."""
        for _ in range(_STABLE_READ_TRIES):
            stamp = _stamp(fd)
            content = self._read_bounded(fd, container_id)
            held = _stamp(fd) == stamp and len(content) == stamp[1]
            if held:
                break
        return content, stamp, held

    def _open(self, container_id: str, mode: int) -> int:
        if not _CONTAINER_ID.fullmatch(container_id):
            raise HostsFileError(container_id, "container id is not 64 hex digits",
                                 kind=WriteFailure.REFUSED)
        root, below = self._confined(container_id)
        flags = os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            reason = f"hosts root {root}: {exc.strerror}"
            raise HostsFileError(container_id, reason, exc.errno) from None
        dir_fd = root_fd
        try:
            # O_NOFOLLOW on every step: no directory below the root, nor the file, may be a
            # symlink leading out of it.
            for name in below[:-1]:
                next_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=dir_fd)
                if dir_fd != root_fd:
                    os.close(dir_fd)
                dir_fd = next_fd
            fd = os.open(below[-1], mode | flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
        except FileNotFoundError:
            raise HostsFileGone(container_id, "no hosts file", errno.ENOENT) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                reason, kind = "refusing a symlink in the hosts file path", WriteFailure.REFUSED
            else:
                reason, kind = f"cannot open hosts file: {exc.strerror}", _failure(exc.errno)
            raise HostsFileError(container_id, reason, exc.errno, kind) from None
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)
            os.close(root_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise HostsFileError(container_id, "hosts file is not a plain, singly linked file",
                                 kind=WriteFailure.REFUSED)
        return fd

    def _read_bounded(self, fd: int, container_id: str) -> bytes:
        chunks = []
        size = 0
        while size <= self.max_bytes:
            chunk = os.pread(fd, self.max_bytes + 1 - size, size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.max_bytes:
            raise HostsFileError(
                container_id, f"hosts file larger than {self.max_bytes} bytes; left alone",
                kind=WriteFailure.TOO_LARGE,
            )
        return b"".join(chunks)

    def _write_in_place(self, fd: int, container_id: str, before: bytes, after: bytes) -> None:
        """The change in the form a concurrent reader is least likely to catch halfway.

        The kernel copies a write into the page cache without excluding readers, so a read
        that races an overwrite can see old and new bytes mixed. Hence the common cases
        avoid overwriting at all: adding the block is an append (the new size is published
        only once the bytes are in), and removing it is a truncate. Any other change grows
        the file with blank lines first, overwrites only the bytes that differ, then
        shrinks it: a reader never sees the file empty or ending early.
        """
        try:
            if after.startswith(before):
                _reserve(fd, len(after))
                _append_all(fd, after[len(before) :])
            elif before.startswith(after):
                _truncate_unless_grown(fd, len(before), len(after))
            else:
                self._overwrite(fd, before, after)
        except OSError as exc:
            _restore(fd, before)
            raise HostsFileError(container_id, f"write failed: {exc.strerror}", exc.errno,
                                 _failure(exc.errno)) from None

    def _overwrite(self, fd: int, before: bytes, after: bytes) -> None:
        """Docker appends its entry on a network connect without a lock, at whatever moment.
        Nothing here writes at or past the end we read except by RWF_APPEND, and a file
        found longer than we left it is left to the next look (`update` sees the size and
        reports a race): its new line must not be overwritten or cut off."""
        current = before
        grow = len(after) - len(before)
        if grow > 0:
            _reserve(fd, len(after))
            _append_all(fd, b"\n" * grow)
            if not _size_is(fd, len(after)):
                return  # someone appended first: blank lines after their line, no harm
            current = before + b"\n" * grow
        padded = after + b"\n" * (len(current) - len(after))
        start, end = _changed_span(current, padded)
        _pwrite_all(fd, padded[start:end], start)
        if len(padded) > len(after):
            _truncate_unless_grown(fd, len(padded), len(after))


def _failure(err: int | None) -> WriteFailure:
    return WriteFailure.NO_SPACE if err in (errno.ENOSPC, errno.EDQUOT) else WriteFailure.IO


def _changed_span(old: bytes, new: bytes) -> tuple[int, int]:
    """[start, end) of the bytes that differ between two strings of equal length. Found by
    bisection on slice comparisons, which run in C."""
    size = len(old)
    lo, hi = 0, size  # the common prefix is at least lo and at most hi bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[lo:mid] == new[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    start = lo
    lo, hi = 0, size - start  # the same for the common suffix, within what is left
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[size - mid : size - lo] == new[size - mid : size - lo]:
            lo = mid
        else:
            hi = mid - 1
    return start, size - lo


def _stamp(fd: int) -> tuple[int, int, int, int]:
    """What changes with any write: (inode, size, mtime, ctime)."""
    info = os.fstat(fd)
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _pwrite_all(fd: int, data: bytes, at: int = 0) -> None:
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.pwrite(fd, view[done:], at + done)


def _append_all(fd: int, data: bytes) -> None:
    """Append at the end as the kernel finds it (RWF_APPEND, under the inode's lock), not at
    the end we read: Docker appends its own entry on a network connect without a lock, and
    a write at the old end would overwrite that line. Then the block lands after it, and
    the next look moves it to the end."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.pwritev(fd, [view[done:]], -1, os.RWF_APPEND)


def _truncate_unless_grown(fd: int, size: int, length: int) -> None:
    """Cut the file to `length` only while it still has the `size` we left it with: a line
    appended since (Docker's, on a network connect) must not be cut off. The kernel has no
    conditional truncate, so a few microseconds between the check and the cut stay open;
    before, it was the whole read, plan and write."""
    if _size_is(fd, size):
        os.ftruncate(fd, length)


def _size_is(fd: int, size: int) -> bool:
    """Whether the file still has the size we left it with: no one appended since."""
    return os.fstat(fd).st_size == size


def _reserve(fd: int, length: int) -> None:
    """Claim the blocks before any byte changes, so a full disk fails here, not midway."""
    if _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err, os.strerror(err))


def _restore(fd: int, before: bytes) -> None:
    """Best effort after a failed write: put the old bytes back where they were."""
    with contextlib.suppress(OSError):
        _pwrite_all(fd, before)
        os.ftruncate(fd, len(before))
