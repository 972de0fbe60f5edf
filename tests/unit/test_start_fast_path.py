"""The start fast path: a write of a stopped target's hosts file is only a trigger. The
address written to the waiting dependents is the one the engine lists for the target, and
the file's content never gives one, however it is forged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from builders import Clock, ListingEngine, NullLog

from hostsyncd import fastpath
from hostsyncd.config import Config
from hostsyncd.core.model import Container, Endpoint
from hostsyncd.fastpath import (
    FIRST_BACKOFF,
    FORGED_GRACE,
    MAX_BACKOFF,
    PROBE_DELAYS,
    EarlyStart,
    ForgedEntry,
    StartFastPath,
)
from hostsyncd.reconcile import Reconciler
from hostsyncd.watcher import Drift
from hostsyncd.writer import HostsWriter

LABEL = "hostsyncd.links"
BASE = b"127.0.0.1\tlocalhost\n"
NET = hashlib.sha256(b"net").hexdigest()


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class _Network:
    """What the engine's network inspect lists: set by the test, counted."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[str, Endpoint]] = {}
        self.calls = 0

    def __call__(self, network_id: str) -> dict[str, tuple[str, Endpoint]]:
        self.calls += 1
        assert network_id == NET
        return dict(self.members)


def _ctr(name: str, ip: str, state: str = "running", links: str | None = None,
         mode: str = "") -> Container:
    labels = {LABEL: links} if links is not None else {}
    return Container(id=cid(name), name=name, state=state, labels=MappingProxyType(labels),
                     network_mode=mode, endpoints=(Endpoint("bridge", NET, ip),))


class World:
    def __init__(self, tmp_path: Path, keep: bool = False, web_links: str = "db",
                 also: tuple[Container, ...] = ()) -> None:
        self.containers = [
            _ctr("db", "", state="exited"),
            _ctr("web", "10.0.0.4", links=web_links),
            _ctr("side", "", mode=f"container:{cid('db')}"),
            *also,
        ]
        for c in self.containers:
            (tmp_path / c.id).mkdir()
            (tmp_path / c.id / "hosts").write_bytes(BASE)
        self.root = tmp_path
        self.network = _Network()
        self.clock = Clock()
        self.hints: list[object] = []
        config = Config.model_validate(
            {"links": {"on_target_stop": "keep" if keep else "remove"}})
        writer = HostsWriter(tmp_path)
        self.rec = Reconciler(config, ListingEngine(self.containers), writer, NullLog())  # type: ignore[arg-type]
        self.fast = StartFastPath(writer, self.network, self.hints.append, self.clock)
        self.rec.fastpath = self.fast
        self.rec.refresh()
        self.rec.reconcile(verify_all=True)
        assert self.rec.stopped_targets == {cid("db")}

    def file(self, name: str) -> bytes:
        return (self.root / cid(name) / "hosts").read_bytes()

    def forge(self, address: str) -> None:
        entry = f"{address}\t{cid('db')[:12]}\n".encode()
        (self.root / cid("db") / "hosts").write_bytes(BASE + entry)

    def empty(self) -> None:
        """The first step of a rebuild (Docker's, or a look-alike): the localhost line."""
        (self.root / cid("db") / "hosts").write_bytes(BASE)

    def run_probes(self, seconds: float) -> None:
        """Step the fast path's clock through every probe of one trigger and beyond."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += 0.001
            self.fast.step(set())


def test_a_trigger_writes_the_address_the_engine_lists_not_the_files(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.forge("10.0.0.66")  # what a sidecar (or Docker) wrote: not the word on the address
    w.network.members[cid("db")] = ("db", Endpoint("bridge", NET, "10.0.0.9"))
    assert w.fast.trigger(cid("db"))
    w.fast.step({cid("db")})
    assert b"10.0.0.9\tdb\n" in w.file("web")
    assert b"10.0.0.66" not in w.file("web")
    [early] = w.hints
    assert isinstance(early, EarlyStart)
    assert early.endpoints == (Endpoint("bridge", NET, "10.0.0.9"),)
    assert [write.file.names for write in early.writes] == [("web",)]
    # The loop adopts it: its next pass agrees with the write instead of undoing it.
    w.rec.started(early)
    assert w.rec.writes == 1
    assert w.rec.reconcile().written == 0
    assert b"10.0.0.9\tdb\n" in w.file("web")
    assert w.rec.stopped_targets == set()
    assert not w.fast.trigger(cid("db"))  # running now: its file is no trigger


def test_only_waiting_targets_files_are_triggers(tmp_path: Path) -> None:
    w = World(tmp_path)
    assert not w.fast.trigger(cid("web"))  # a dependent's file: drift, the loop's
    assert not w.fast.trigger(cid("nothing"))
    assert w.fast.trigger(cid("db"))


@pytest.mark.parametrize("forged", ["6.6.6.6", "10.0.0.5", "127.0.0.1", "0.0.0.0", "224.0.0.1"])
@pytest.mark.parametrize("keep", [False, True])
def test_a_forged_own_entry_is_never_written_and_is_reported_with_the_sharers(
    tmp_path: Path, forged: str, keep: bool
) -> None:
    w = World(tmp_path, keep=keep)
    before = w.file("web")
    w.forge(forged)
    w.fast.step({cid("db")})
    w.run_probes(PROBE_DELAYS[-1] + 0.01)
    assert w.file("web") == before
    assert w.network.calls == len(PROBE_DELAYS)
    [found] = w.hints
    assert found == ForgedEntry(cid("db"), "db", forged, ("side",))


def test_a_file_without_an_own_entry_is_not_reported(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.fast.step({cid("db")})
    w.run_probes(0.2)
    assert w.hints == []


def test_a_late_endpoint_is_found_by_a_later_probe(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.fast.step({cid("db")})
    w.run_probes(PROBE_DELAYS[2] + 0.0005)
    assert w.hints == []
    w.network.members[cid("db")] = ("db", Endpoint("bridge", NET, "10.0.0.9"))
    w.run_probes(PROBE_DELAYS[3] - PROBE_DELAYS[2])
    assert [type(h) for h in w.hints] == [EarlyStart]
    assert b"10.0.0.9\tdb\n" in w.file("web")


def test_a_file_written_in_a_loop_costs_engine_calls_at_a_falling_rate(tmp_path: Path) -> None:
    """A sidecar rewriting a stopped target's file in a tight loop: after one round of
    probes finds nothing, triggers wait out a backoff that doubles up to MAX_BACKOFF."""
    w = World(tmp_path)
    w.forge("6.6.6.6")
    seconds = 60.0
    end = w.clock.now + seconds
    while w.clock.now < end:
        w.clock.now += 0.001
        w.fast.step({cid("db")})  # a write every millisecond
    rounds = w.network.calls / len(PROBE_DELAYS)
    # 0.25 + 0.5 + 1 + 2 + 4 + 5 + 5 ...: about 16 rounds in 60 s, not 60,000 calls.
    assert rounds <= 6 + seconds / MAX_BACKOFF
    assert FIRST_BACKOFF < MAX_BACKOFF
    assert sum(isinstance(h, ForgedEntry) for h in w.hints) == rounds  # the loop says it once


def _rebuilds_caught_between_steps(w: World, full: bytes | None, rounds: int,
                                   cycles: int = 3) -> None:
    """A sidecar rewriting db's file like Docker, in two complete writes (each closes the
    file): emptied to the localhost line, then `full` (None: the localhost line again).
    Paced the way a loaded CI run paced it: the emptied step starts each round of probes,
    and the full step lands only after the round has ended (backed off), so every round's
    own look at the file finds the emptied step."""
    db = cid("db")
    path = w.root / db / "hosts"
    for _ in range(rounds):
        w.empty()
        w.fast.step({db}, {db})  # starts a round: its backoff has run out
        w.run_probes(PROBE_DELAYS[-1] + 0.01)  # the round ends on the emptied file
        for _ in range(cycles):  # the full step, then more cycles inside the backoff
            path.write_bytes(full if full is not None else BASE)
            w.clock.now += 0.001
            w.fast.step({db}, {db})
            w.empty()
            w.clock.now += 0.001
            w.fast.step({db}, {db})
        w.clock.now += MAX_BACKOFF  # the backoff runs out


def test_a_forgery_written_in_two_steps_is_found_though_every_round_ends_between_them(
    tmp_path: Path
) -> None:
    """CI: the forgery across a daemon restart was never reported, because each of the
    few rounds of probes in the forger's 3 s read the file in its emptied step."""
    w = World(tmp_path)
    before = w.file("web")
    entry = f"6.6.6.6\t{cid('db')[:12]}\n".encode()
    _rebuilds_caught_between_steps(w, BASE + entry, rounds=4)
    assert w.file("web") == before
    forged = [h for h in w.hints if isinstance(h, ForgedEntry)]
    assert forged, "a forgery written in steps was never seen"
    assert set(forged) == {ForgedEntry(cid("db"), "db", "6.6.6.6", ("side",))}
    assert len(forged) <= 4  # once per round at most: the reads stop at the first find
    assert w.network.calls == 4 * len(PROBE_DELAYS)  # the re-reads never ask the engine
    assert not any(isinstance(h, EarlyStart) for h in w.hints)


def test_a_file_rewritten_without_an_own_entry_costs_bounded_reads(tmp_path: Path) -> None:
    w = World(tmp_path)
    reads = 0
    read = w.fast.writer.read

    def counted(container_id: str) -> bytes:
        nonlocal reads
        reads += 1
        return read(container_id)

    w.fast.writer.read = counted  # type: ignore[method-assign]
    _rebuilds_caught_between_steps(w, None, rounds=3, cycles=fastpath.RECHECKS)
    assert w.hints == []
    # Each round's own read, then RECHECKS of the 2 * RECHECKS closes in its backoff.
    assert reads == 3 * (1 + fastpath.RECHECKS)


def test_the_loop_reports_a_forgery_once_and_not_for_a_target_that_started(
    tmp_path: Path
) -> None:
    said: list[tuple[str, dict[str, Any]]] = []

    class Log(NullLog):
        def warning(self, message: str, **fields: Any) -> None:
            said.append((message, fields))

    w = World(tmp_path)
    clock = Clock()
    w.rec.clock = clock
    w.rec.problems.log = Log()
    found = ForgedEntry(cid("db"), "db", "6.6.6.6", ("side",))
    w.rec.forged(found)
    w.rec.repair()
    assert said == []  # the engine may yet list a start: not before FORGED_GRACE
    assert w.rec.retry_due == clock.now + FORGED_GRACE
    clock.now += FORGED_GRACE
    w.rec.repair()
    w.rec.forged(found)
    clock.now += FORGED_GRACE
    w.rec.repair()
    assert len(said) == 1
    message, fields = said[0]
    assert "forged" in message
    assert fields["container_name"] == "db"
    assert fields["shared_with"] == ["side"]
    # A target the engine says has started: the entry was Docker's, nothing to say.
    w.rec.observed.connected(cid("db"), "db", Endpoint("bridge", NET, "10.0.0.9"), 0.0)
    w.rec.problems.forget(f"{cid('db')}/forged")
    w.rec.forged(found)
    clock.now += FORGED_GRACE
    w.rec.repair()
    assert len(said) == 1


def test_a_container_fighting_us_is_written_by_the_loops_backoff_not_the_fast_path(
    tmp_path: Path
) -> None:
    """Its fight ends when a timed look finds our last write still there; a fast-path write
    moments before that look would end it falsely (seen in CI: a fighter reported twice)."""
    w = World(tmp_path, web_links="db cache", also=(_ctr("cache", "10.0.0.7"),))
    web = w.root / cid("web") / "hosts"
    assert b"10.0.0.7\tcache\n" in web.read_bytes()
    for _ in range(30):  # the container empties its file, and gets its block back
        web.write_bytes(BASE)
        w.rec.drifted([Drift(cid("web"))])
        w.rec.repair()
    assert w.rec.queue.fighting(cid("web"))
    web.write_bytes(BASE)  # and again, while its target starts
    w.network.members[cid("db")] = ("db", Endpoint("bridge", NET, "10.0.0.9"))
    assert w.fast.trigger(cid("db"))
    w.fast.step({cid("db")})
    [early] = w.hints
    assert isinstance(early, EarlyStart) and early.writes == ()
    assert web.read_bytes() == BASE
    # The loop writes it (the plan changed), and its backoff stands.
    w.rec.started(early)
    assert w.rec.reconcile().written == 1
    assert b"10.0.0.9\tdb\n" in web.read_bytes()
    assert w.rec.queue.fighting(cid("web"))


def test_suspects_keep_one_entry_per_target_until_its_grace_ends_or_it_goes() -> None:
    suspects = fastpath.Suspects()
    first = ForgedEntry(cid("db"), "db", "6.6.6.6", ())
    suspects.add(first, 10.0)
    suspects.add(ForgedEntry(cid("db"), "db", "7.7.7.7", ()), 10.5)  # the first one stands
    suspects.add(ForgedEntry(cid("mq"), "mq", "8.8.8.8", ()), 10.2)
    assert suspects.next_due() == 10.0 + FORGED_GRACE
    assert suspects.take_due(10.0 + FORGED_GRACE - 0.01) == []
    assert suspects.take_due(10.0 + FORGED_GRACE) == [first]
    assert suspects.take_due(10.0 + FORGED_GRACE) == []  # said once: no longer kept
    assert list(suspects) == [cid("mq")]
    suspects.forget([cid("mq")])  # mq was removed: what was kept about it goes
    assert not suspects and suspects.next_due() is None
