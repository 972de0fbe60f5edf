"""[metrics]: the config keys, what the reconciler counts, the textfile (parsed back with
prometheus_client's own parser), its atomic write and mode, the writer thread's backoff,
and that no label value comes from a container."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from builders import LINKS, Clock, ListingEngine, NullLog, cid, ctr, net
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from hostsyncd import metrics
from hostsyncd import reports as reports_module
from hostsyncd.config import Config, ConfigError, load
from hostsyncd.core.graph import plan_all
from hostsyncd.core.observed import ObservedState
from hostsyncd.engine import EngineEvent
from hostsyncd.metrics import (
    OTHER,
    PROBLEM_KINDS,
    LinkState,
    Readings,
    TextfileWriter,
    link_states,
    problem_kinds,
    write_textfile,
)
from hostsyncd.problems import ProblemLog
from hostsyncd.reconcile import Reconciler
from hostsyncd.stats import Histogram, PassKind, Stats, WriteFailure, WriteKind
from hostsyncd.writer import HostsWriter

BASE = b"127.0.0.1\tlocalhost\n"


# -- config -------------------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load(path)


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "")
    assert cfg.metrics.textfile == ""
    assert cfg.metrics.interval == 15.0


def test_metrics_textfile_and_interval(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[metrics]\ntextfile = "/var/lib/node/hostsyncd.prom"\n'
                          "interval = 5\n")
    assert cfg.metrics.textfile == "/var/lib/node/hostsyncd.prom"
    assert cfg.metrics.interval == 5.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('textfile = "relative/hostsyncd.prom"', "absolute"),
        ('textfile = "/var/lib/node/hostsyncd.txt"', ".prom"),
        ('textfile = "/var/lib/node/.prom"', ".prom"),
        ("textfile = 5", ""),
        ("interval = 0", ""),
        ("interval = 0.5", ""),
        ("interval = 7200", ""),
        ('interval = "often"', ""),
    ],
)
def test_bad_metrics_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    key = text.split(" ")[0]
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[metrics]\n{text}\n")
    assert f"  metrics.{key}: " in str(err.value)
    assert needle in str(err.value)


def test_unknown_metrics_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port: unknown key"):
        _load(tmp_path, "[metrics]\nport = 9100\n")


# -- the counts ---------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    hist = Histogram((0.01, 0.1))
    for value in (0.005, 0.01, 0.05, 3.0):
        hist.observe(value)
    # le is "less than or equal": 0.01 falls in the first bucket.
    assert hist.cumulative() == [(0.01, 2), (0.1, 3), (float("inf"), 4)]
    assert hist.count == 4
    assert hist.sum == pytest.approx(3.065)


def test_histogram_size_does_not_grow_with_observations() -> None:
    hist = Histogram()
    for i in range(10_000):
        hist.observe(i / 100)
    assert len(hist.counts) == len(hist.bounds) + 1
    assert hist.count == 10_000


def _world(tmp_path: Path, containers: list[Any]) -> tuple[Reconciler, Clock]:
    for c in containers:
        (tmp_path / c.id).mkdir(exist_ok=True)
        (tmp_path / c.id / "hosts").write_bytes(BASE)
    clock = Clock()
    rec = Reconciler(Config(), ListingEngine(containers), HostsWriter(tmp_path), NullLog(),  # type: ignore[arg-type]
                     clock=clock)
    return rec, clock


def test_the_reconciler_counts_writes_passes_events_and_propagation(tmp_path: Path) -> None:
    db = ctr("db", net("bridge", "10.0.0.2"))
    web = ctr("web", net("bridge", "10.0.0.3"), links="db")
    api = ctr("api", net("bridge", "10.0.0.4"), links="db")
    rec, clock = _world(tmp_path, [db, web, api])
    rec.refresh()
    rec.reconcile(verify_all=True)
    s = rec.stats
    assert s.writes == Counter({WriteKind.UPDATE: 2})
    assert s.passes == Counter({PassKind.FULL: 1})
    assert s.pass_seconds.count == 1
    assert s.propagation_seconds.count == 0  # no event behind that pass

    # db moves: an event read at 100.0, the pass writes both files at 100.25.
    rec.engine.containers[0] = ctr("db", net("bridge", "10.0.0.9"))  # type: ignore[attr-defined]
    event = EngineEvent("container", "start", db.id, received=100.0)
    clock.now = 100.25
    rec.apply_events([event])
    rec.refresh()
    rec.reconcile(since=event.received)
    assert s.events == 1
    assert s.writes[WriteKind.UPDATE] == 4
    assert s.passes == Counter({PassKind.FULL: 1, PassKind.EVENTS: 1})
    assert s.propagation_seconds.count == 2
    assert s.propagation_seconds.sum == pytest.approx(0.5)
    assert rec.writes == 4

    # Someone strips web's block: a resync puts it back, as a repair.
    (tmp_path / web.id / "hosts").write_bytes(BASE)
    rec.reconcile(verify_all=True)
    assert s.writes[WriteKind.REPAIR] == 1
    assert s.writes[WriteKind.UPDATE] == 4


def test_a_failed_write_is_counted_by_its_kind(tmp_path: Path) -> None:
    db = ctr("db", net("bridge", "10.0.0.2"))
    web = ctr("web", net("bridge", "10.0.0.3"), links="db")
    rec, _ = _world(tmp_path, [db, web])
    hosts = tmp_path / web.id / "hosts"
    hosts.unlink()
    hosts.symlink_to(tmp_path / db.id / "hosts")
    rec.refresh()
    rec.reconcile(verify_all=True)
    assert rec.stats.write_errors == Counter({WriteFailure.REFUSED: 1})
    assert rec.write_errors == 1
    assert rec.problems.counts()["file"] == 1


# -- bounded labels -----------------------------------------------------------------------


def test_link_states_use_the_routine_set() -> None:
    containers = [
        ctr("db", state="exited"),  # routine: not running
        ctr("up", net("bridge", "10.0.0.2")),
        ctr("hostnet", network_mode="host"),  # no address of its own: a problem
        ctr("web", net("bridge", "10.0.0.3"), links="db up hostnet bad/a/b missing"),
    ]
    observed = ObservedState()
    observed.listed(containers, 0.0)
    states = link_states(plan_all(observed.snapshot(), LINKS).values())
    assert states == {LinkState.RESOLVED: 1, LinkState.WAITING: 2,  # db, missing
                      LinkState.UNRESOLVED: 1, LinkState.INVALID: 1}


def test_problem_counts_are_by_kind_never_by_name() -> None:
    log = ProblemLog(NullLog())
    hostile = "x" * 64
    log.set(f"{cid('web')}/links", {"spec:a": "bad", "spec:b": "bad too"})
    log.set(f"{cid('web')}/waiting", {"link:db": "not running"}, level="info")
    log.add(f"{cid('api')}/file", "write", "failed", level="error")
    log.add("engine", "call", "down")
    log.add("cluster/records", "node b", "refused")
    log.add(f"{hostile}/{hostile}", "k", "a subject no code writes")
    counts = log.counts()
    assert counts == {"links": 2, "file": 1, "engine": 1, "cluster": 1, hostile: 1}
    kinds = problem_kinds(counts)
    assert set(kinds) == PROBLEM_KINDS | {OTHER}
    assert kinds[OTHER] == 1 and kinds["links"] == 2
    log.set(f"{cid('web')}/links", {})
    assert "links" not in log.counts()


def test_every_per_container_problem_subject_has_a_kind() -> None:
    # The per-container subjects, less the routine one, are each a kind of
    # their own: one added there without a kind here would be counted as "other".
    subjects = set(reports_module._SUBJECTS) - {"waiting"}
    assert subjects <= PROBLEM_KINDS


def _label_values(text: str) -> set[tuple[str, str]]:
    found = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.update((k, v) for k, v in sample.labels.items() if k != "le")
    return found


def test_label_values_stay_the_same_set_whatever_containers_do(tmp_path: Path) -> None:
    # Thousands of containers with hostile names, labels and problems: the file's label
    # values are the same set as for none.
    names = [f"web{i}\n# evil{{kind=\"x\"}}" for i in range(2000)]
    log = ProblemLog(NullLog())
    for i, name in enumerate(names):
        log.add(f"{cid(name)}/file", f"k{i}", name, level="error")
        log.add(f"{cid(name)}/{name}", "k", name)
    big = _readings(problems=log.counts())
    small = _readings(problems={})
    texts = []
    for readings in (big, small):
        path = tmp_path / "m.prom"
        writer = TextfileWriter(path)
        assert writer.write(readings)
        texts.append(path.read_text())
    assert _label_values(texts[0]) == _label_values(texts[1])
    assert len(texts[0]) < 6000
    assert "evil" not in texts[0]


# -- the textfile -------------------------------------------------------------------------


def _readings(**changes: Any) -> Readings:
    stats = Stats()
    stats.writes.update({WriteKind.UPDATE: 5, WriteKind.REPAIR: 2})
    stats.write_errors[WriteFailure.NO_SPACE] = 3
    stats.passes.update({PassKind.FULL: 4, PassKind.EVENTS: 7})
    for value in (0.002, 0.02, 0.2):
        stats.pass_seconds.observe(value)
    stats.propagation_seconds.observe(0.004)
    stats.events = 42
    fields: dict[str, Any] = {
        "stats": stats,
        "dependents": 3,
        "links": {LinkState.RESOLVED: 4, LinkState.WAITING: 1},
        "problems": {"file": 2},
        "engine_up": True,
        "cluster_up": None,
        "started": 1_700_000_000.0,
    }
    return Readings(**(fields | changes))


def _parse(path: Path) -> dict[str, Any]:
    """{family name: {(sample name, labels without le or with): value}}"""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(path.read_text()):
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return out


def test_the_textfile_says_what_the_readings_say(tmp_path: Path) -> None:
    path = tmp_path / "hostsyncd.prom"
    assert TextfileWriter(path).write(_readings())
    m = _parse(path)
    assert m["hostsyncd_writes"][("hostsyncd_writes_total", (("kind", "update"),))] == 5
    assert m["hostsyncd_writes"][("hostsyncd_writes_total", (("kind", "repair"),))] == 2
    assert m["hostsyncd_writes"][("hostsyncd_writes_total", (("kind", "fastpath"),))] == 0
    errors = m["hostsyncd_write_errors"]
    assert errors[("hostsyncd_write_errors_total", (("kind", "no_space"),))] == 3
    assert errors[("hostsyncd_write_errors_total", (("kind", "io"),))] == 0
    assert m["hostsyncd_passes"][("hostsyncd_passes_total", (("kind", "events"),))] == 7
    passes = m["hostsyncd_pass_duration_seconds"]
    assert passes[("hostsyncd_pass_duration_seconds_count", ())] == 3
    assert passes[("hostsyncd_pass_duration_seconds_bucket", (("le", "0.0025"),))] == 1
    assert passes[("hostsyncd_pass_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    assert passes[("hostsyncd_pass_duration_seconds_sum", ())] == pytest.approx(0.222)
    prop = m["hostsyncd_propagation_seconds"]
    assert prop[("hostsyncd_propagation_seconds_bucket", (("le", "0.005"),))] == 1
    assert prop[("hostsyncd_propagation_seconds_bucket", (("le", "0.0025"),))] == 0
    assert m["hostsyncd_engine_events"][("hostsyncd_engine_events_total", ())] == 42
    assert m["hostsyncd_dependents"][("hostsyncd_dependents", ())] == 3
    links = m["hostsyncd_links"]
    assert links[("hostsyncd_links", (("state", "resolved"),))] == 4
    assert links[("hostsyncd_links", (("state", "invalid"),))] == 0
    assert m["hostsyncd_problems"][("hostsyncd_problems", (("kind", "file"),))] == 2
    assert m["hostsyncd_engine_up"][("hostsyncd_engine_up", ())] == 1
    assert "hostsyncd_cluster_up" not in m  # the cluster is off
    assert m["hostsyncd_start_time_seconds"][("hostsyncd_start_time_seconds", ())] == 1.7e9

    assert TextfileWriter(path).write(_readings(cluster_up=False, engine_up=False))
    m = _parse(path)
    assert m["hostsyncd_cluster_up"][("hostsyncd_cluster_up", ())] == 0
    assert m["hostsyncd_engine_up"][("hostsyncd_engine_up", ())] == 0


def test_the_textfile_is_readable_by_all_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "hostsyncd.prom"
    old = os.umask(0o077)  # the unit's
    try:
        assert TextfileWriter(path).write(_readings())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostsyncd.prom"]


class _Exploding(Collector):
    def collect(self) -> Any:
        raise OSError(28, "No space left on device")

    def describe(self) -> Any:
        return ()


def test_a_failed_write_leaves_the_old_file_whole_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "hostsyncd.prom"
    assert TextfileWriter(path).write(_readings())
    before = path.read_bytes()
    registry = CollectorRegistry()
    registry.register(_Exploding())
    with pytest.raises(OSError):
        write_textfile(path, registry)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostsyncd.prom"]


def test_the_file_is_replaced_never_rewritten_in_place(tmp_path: Path) -> None:
    # A reader holding the old file open keeps reading the old, whole content.
    path = tmp_path / "hostsyncd.prom"
    assert TextfileWriter(path).write(_readings())
    with path.open("rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        assert TextfileWriter(path).write(_readings(dependents=99))
        assert b"hostsyncd_dependents 3.0" in old.read()
    assert path.stat().st_ino != inode
    assert b"hostsyncd_dependents 99.0" in path.read_bytes()


def test_a_missing_directory_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    writer = TextfileWriter(tmp_path / "gone" / "hostsyncd.prom")
    assert not writer.write(_readings())
    assert writer.failure is not None and "metrics.textfile" in writer.failure
    assert "No such file or directory" in writer.failure


# -- the writer's thread -------------------------------------------------------------------


class _Disk:
    """A write function that fails while `full`, recording each call's time."""

    def __init__(self) -> None:
        self.full = True
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path, registry: CollectorRegistry) -> None:
        with self.lock:
            self.calls.append(time.monotonic())
        if self.full:
            raise OSError(28, "No space left on device")
        write_textfile(path, registry)


def test_a_failing_write_backs_off_instead_of_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "FIRST_BACKOFF", 0.2)
    disk = _Disk()
    writer = TextfileWriter(tmp_path / "hostsyncd.prom", write=disk)
    writer.start()
    try:
        # The loop hands over readings far more often than any backoff: 100 in 0.5 s.
        for _ in range(100):
            writer.publish(_readings())
            time.sleep(0.005)
        # Tries at 0, 0.2, 0.6 (+ 0.8 at 1.4): at most 3 in this half second.
        assert 1 <= len(disk.calls) <= 3, disk.calls
        gaps = [b - a for a, b in zip(disk.calls, disk.calls[1:], strict=False)]
        assert all(gap >= 0.19 for gap in gaps), gaps
        assert writer.failure is not None and "No space left" in writer.failure
        disk.full = False
        # The readings that failed are tried again after the backoff, without new ones.
        deadline = time.monotonic() + 5
        while writer.written == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.written == 1
        assert writer.failure is None
    finally:
        writer.stop(_readings(), timeout=2)
    assert not writer._thread.is_alive()


def test_stop_writes_the_final_readings_even_while_backing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "FIRST_BACKOFF", 60.0)
    disk = _Disk()
    path = tmp_path / "hostsyncd.prom"
    writer = TextfileWriter(path, write=disk)
    writer.start()
    writer.publish(_readings())
    deadline = time.monotonic() + 5
    while not disk.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    disk.full = False
    started = time.monotonic()
    writer.stop(_readings(dependents=7), timeout=5)
    assert time.monotonic() - started < 2  # not the 60 s backoff
    assert _parse(path)["hostsyncd_dependents"][("hostsyncd_dependents", ())] == 7


def test_stop_does_not_wait_for_a_hung_disk(tmp_path: Path) -> None:
    release = threading.Event()

    def hung(path: Path, registry: CollectorRegistry) -> None:
        release.wait(10)

    writer = TextfileWriter(tmp_path / "hostsyncd.prom", write=hung)
    writer.start()
    writer.publish(_readings())
    started = time.monotonic()
    writer.stop(_readings(), timeout=0.3)
    assert time.monotonic() - started < 1.5
    release.set()


def test_a_bug_while_rendering_is_a_failure_and_the_thread_lives_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "FIRST_BACKOFF", 0.05)
    calls: list[int] = []

    def broken_once(path: Path, registry: CollectorRegistry) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug")
        write_textfile(path, registry)

    path = tmp_path / "hostsyncd.prom"
    writer = TextfileWriter(path, write=broken_once)
    assert not writer.write(_readings())
    assert writer.failure is not None and "TypeError: a bug" in writer.failure
    writer.start()
    writer.publish(_readings(dependents=5))
    writer.stop(_readings(dependents=6), timeout=5)
    assert writer.failure is None
    assert _parse(path)["hostsyncd_dependents"][("hostsyncd_dependents", ())] == 6
