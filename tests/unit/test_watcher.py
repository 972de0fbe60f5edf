"""The file watcher on real inotify, on files in a temporary directory."""

from __future__ import annotations

import queue
import struct
import threading
from pathlib import Path

import pytest

from hostsyncd._inotify import IN_CLOSE_WRITE, IN_MODIFY, IN_Q_OVERFLOW, Inotify
from hostsyncd.watcher import HostsWatcher


class Seen:
    def __init__(self) -> None:
        self.changes: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self.overflows = 0

    def next(self, timeout: float = 5.0) -> tuple[str, bool]:
        return self.changes.get(timeout=timeout)

    def drain(self, wait: float = 0.3) -> set[tuple[str, bool]]:
        out = set()
        while True:
            try:
                out.add(self.changes.get(timeout=wait))
            except queue.Empty:
                return out

    def none(self, wait: float = 0.2) -> bool:
        try:
            self.changes.get(timeout=wait)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def files(tmp_path: Path):
    for cid in ("a", "b", "c"):
        (tmp_path / cid).mkdir()
        (tmp_path / cid / "hosts").write_bytes(b"127.0.0.1\tlocalhost\n")
    seen = Seen()

    def overflow() -> None:
        seen.overflows += 1

    watcher = HostsWatcher(lambda cid: tmp_path / cid / "hosts",
                           lambda cid, closed: seen.changes.put((cid, closed)), overflow)
    watcher.start()
    yield tmp_path, watcher, seen
    watcher.stop()


def test_a_write_then_its_close_are_told_apart(files) -> None:
    root, watcher, seen = files
    watcher.watch_only({"a"})
    with open(root / "a" / "hosts", "ab") as f:
        f.write(b"x\n")
        f.flush()
        assert seen.next() == ("a", False)  # written, still open: maybe one piece of several
    assert seen.next() == ("a", True)


def test_only_the_watched_files_are_seen_and_unwatching_stops_them(files) -> None:
    root, watcher, seen = files
    watcher.watch_only({"a", "b"})
    (root / "c" / "hosts").write_bytes(b"c\n")
    (root / "c" / "other").write_bytes(b"a log line\n")
    (root / "a" / "config.v2.json").write_bytes(b"{}")  # the same directory, another file
    assert seen.none()
    (root / "b" / "hosts").write_bytes(b"b\n")
    assert seen.drain() == {("b", False), ("b", True)}  # truncated and written, then closed
    watcher.watch_only({"a"})
    (root / "b" / "hosts").write_bytes(b"b again\n")
    assert seen.none()
    (root / "a" / "hosts").write_bytes(b"a\n")
    assert seen.next()[0] == "a"


def test_a_missing_file_is_not_watched_until_it_is_there_and_asked_again(files) -> None:
    root, watcher, seen = files
    (root / "d").mkdir()
    watcher.watch_only({"d"})  # not there yet: no error, no watch
    (root / "d" / "hosts").write_bytes(b"d\n")
    assert seen.none()
    watcher.watch_only({"d"})
    (root / "d" / "hosts").write_bytes(b"d\n")
    assert seen.next()[0] == "d"


def test_a_removed_file_drops_its_watch_and_a_new_one_is_watched_again(files) -> None:
    root, watcher, seen = files
    watcher.watch_only({"a"})
    (root / "a" / "hosts").unlink()
    (root / "a" / "hosts").write_bytes(b"recreated\n")
    assert seen.none()  # a new file: the old watch went with the old one
    watcher.watch_only({"a"})
    (root / "a" / "hosts").write_bytes(b"again\n")
    assert seen.next()[0] == "a"


def test_a_symlink_in_place_of_the_file_is_not_followed(files) -> None:
    root, watcher, seen = files
    (root / "a" / "hosts").unlink()
    (root / "a" / "hosts").symlink_to(root / "b" / "hosts")
    watcher.watch_only({"a"})
    (root / "b" / "hosts").write_bytes(b"through the link\n")
    assert seen.none()


def test_an_overflow_is_reported_once_until_handled(files) -> None:
    _, watcher, seen = files
    overflow = struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)
    watcher._inotify.dispatch(overflow * 3)
    watcher._inotify.dispatch(overflow)
    assert seen.overflows == 1
    watcher.overflow_handled()
    watcher._inotify.dispatch(overflow)
    assert seen.overflows == 2


def test_events_of_one_read_are_all_handed_on_names_skipped() -> None:
    got: list[tuple[int, int]] = []
    inotify = Inotify(lambda wd, mask: got.append((wd, mask)), lambda: None)
    try:
        named = struct.pack("iIII", 3, IN_MODIFY, 0, 16) + b"name".ljust(16, b"\0")
        inotify.dispatch(named + struct.pack("iIII", 4, IN_CLOSE_WRITE, 0, 0))
        assert got == [(3, IN_MODIFY), (4, IN_CLOSE_WRITE)]
    finally:
        inotify.stop()


def test_stop_ends_the_reading_thread() -> None:
    inotify = Inotify(lambda wd, mask: None, lambda: None)
    inotify.start()
    inotify.stop()
    assert not any(t.name == "inotify" and t.is_alive() for t in threading.enumerate()
                   if t is inotify._thread)
