"""Torn reads: a reader hammers both dependents' hosts files while the target's IP moves
and each file is rewritten, by Docker for --link and by hostsyncd for the label. A read is
bad when it is empty, or is not a whole file: Docker's localhost line first, the
container's own entry present, every line complete, and the managed block balanced."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lib import Bench, alias_ip, run_alone, wait_for


class Hammer(threading.Thread):
    def __init__(self, files: dict[str, tuple[Path, bytes]]) -> None:
        super().__init__(daemon=True)
        self.files = files
        self.reads = dict.fromkeys(files, 0)
        self.empty = dict.fromkeys(files, 0)
        self.torn = dict.fromkeys(files, 0)
        self.examples: dict[str, bytes] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        fds = {side: os.open(path, os.O_RDONLY) for side, (path, _) in self.files.items()}
        try:
            while not self.stopping.is_set():
                for side, fd in fds.items():
                    content = os.pread(fd, 1 << 20, 0)
                    self.reads[side] += 1
                    if not content:
                        self.empty[side] += 1
                    elif not _whole(content, self.files[side][1]):
                        self.torn[side] += 1
                        self.examples.setdefault(side, content)
        finally:
            for fd in fds.values():
                os.close(fd)


def _whole(content: bytes, own_entry: bytes) -> bool:
    lines = content.splitlines(keepends=True)
    return (
        content.startswith(b"127.0.0.1\tlocalhost\n")
        and content.endswith(b"\n")
        and own_entry in lines
        and content.count(b"# BEGIN hostsyncd") == content.count(b"# END hostsyncd") <= 1
    )


def measure(bench: Bench, rewrites: int = 200) -> dict[str, object]:
    db = bench.run("tr-db")
    deps = {
        "link": bench.run("tr-linked", links={bench.name("tr-db"): "db"}),
        "hostsyncd": bench.run(
            "tr-labelled", labels={"hostsyncd.links": f"{bench.name('tr-db')}:db"}
        ),
    }
    files = {
        side: (bench.hosts_path(cid), f"{bench.ip(cid)}\t{cid[:12]}\n".encode())
        for side, cid in deps.items()
    }
    wait_for(lambda: alias_ip(files["hostsyncd"][0].read_bytes(), "db"), 10)
    hammer = Hammer(files)
    hammer.start()
    # Each restart rewrites both files: Docker rewrites the --link file, hostsyncd drops
    # the line at the stop and writes the new one at the start.
    cycles = max(1, rewrites // 2)
    try:
        for i in range(cycles):
            old = bench.ip(db)
            bench.api.stop(db, timeout=0)
            if i % 2 == 0:
                bench.run(f"tr-thief{i}")  # move the IP so every cycle changes content
            bench.api.start(db)
            wait_for(lambda old=old: alias_ip(files["hostsyncd"][0].read_bytes(), "db")
                     not in (None, old) or bench.ip(db) == old, 10)
    finally:
        hammer.stopping.set()
        hammer.join()
    return {
        "rewrites": cycles * 2,
        **{f"{side}_reads": hammer.reads[side] for side in deps},
        **{f"{side}_empty": hammer.empty[side] for side in deps},
        **{f"{side}_torn": hammer.torn[side] for side in deps},
        "examples": {k: v.decode(errors="replace") for k, v in hammer.examples.items()},
    }


if __name__ == "__main__":
    run_alone(measure, rewrites=30)
