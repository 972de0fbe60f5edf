"""The pure decider, hostsyncd.core.reconcile: which blocks, which writes, which skipped
links (and why), which conflicts, what keep mode remembers."""

from __future__ import annotations

from dataclasses import replace

from builders import LINKS as LABEL
from builders import cid, ctr, examples, net
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsyncd.core.graph import UNMANAGED_MOUNT, Problem, Snapshot, files_of, plan_all
from hostsyncd.core.hostsblock import BEGIN, merge, render_block
from hostsyncd.core.model import Container, Endpoint, HostLine
from hostsyncd.core.reconcile import (
    ROUTINE,
    Conflict,
    Skip,
    conflicts,
    file_block,
    reconcile,
    transform,
)

DB = ctr("db", net("n", "10.0.0.2"))
DB_LINE = HostLine("10.0.0.2", ("db",))


def block(*lines: HostLine) -> bytes:
    return render_block(lines)


def remote(node: str, name: str, ipv4: str) -> Container:
    return Container(id=cid(f"{node}:{name}"), name=name, state="running",
                     endpoints=(Endpoint("macvlan0", "", ipv4),), node=node)


# --- blocks and writes ------------------------------------------------------------------


def test_a_file_without_its_block_is_written_and_one_holding_it_is_not() -> None:
    web, api = ctr("web", net("n"), links="db"), ctr("api", net("n"), links="db:data")
    snapshot = Snapshot([DB, web, api])
    result = reconcile(snapshot, {cid("web"): block(DB_LINE)}, LABEL)
    assert result.blocks == {cid("web"): block(DB_LINE),
                             cid("api"): block(HostLine("10.0.0.2", ("data", "db")))}
    assert result.writes == (cid("api"),)
    assert set(result.plans) == set(result.files) == {cid("web"), cid("api")}
    assert result.skipped == {}
    assert result.unmanaged == {}
    assert result.conflicts == ()
    assert result.waiting == {}


def test_a_file_holding_another_block_is_written() -> None:
    web = ctr("web", net("n"), links="db")
    stale = block(HostLine("10.0.0.9", ("db",)))
    result = reconcile(Snapshot([DB, web]), {cid("web"): stale}, LABEL)
    assert result.writes == (cid("web"),)
    assert result.blocks[cid("web")] == block(DB_LINE)


def test_a_dependent_that_mounts_its_own_hosts_is_said_unmanaged_and_never_written() -> None:
    mounted = replace(ctr("mounted", net("n"), links="db"), hosts_mounted=True)
    web = ctr("web", net("n"), links="db")
    result = reconcile(Snapshot([DB, mounted, web]), {}, LABEL)
    assert result.unmanaged == {cid("mounted"): UNMANAGED_MOUNT}
    assert set(result.files) == set(result.blocks) == {cid("web")}
    assert result.writes == (cid("web"),)
    # Its links are still resolved, for status and graph.
    assert set(result.plans) == {cid("mounted"), cid("web")}


def test_a_stopped_target_is_waited_for_by_its_managed_dependents() -> None:
    stopped = ctr("db", net("n"), state="exited")
    web = ctr("web", net("n"), links="db")
    result = reconcile(Snapshot([stopped, web]), {}, LABEL)
    assert result.waiting == {cid("db"): [result.plans[cid("web")]]}
    # No line, so the file gets no block: nothing to write over an absent one.
    assert result.blocks == {cid("web"): b""}
    assert result.skipped == {cid("web"): (Skip(cid("web"), "db", Problem.NOT_RUNNING),)}


# --- skipped links ----------------------------------------------------------------------


def test_each_link_without_a_line_is_skipped_with_its_spec_as_written_and_why() -> None:
    host = ctr("h", net("host"), network_mode="host")
    web = ctr("web", net("n"), links="db gone:g h@n other/x")
    result = reconcile(Snapshot([DB, host, web]), {}, LABEL)
    assert result.skipped == {cid("web"): (
        Skip(cid("web"), "gone:g", Problem.MISSING),
        Skip(cid("web"), "h@n", Problem.HOST_NETWORK),
        Skip(cid("web"), "other/x", Problem.NO_CLUSTER),
    )}
    # The resolved link is no skip, and the dependent's block still has its line.
    assert result.blocks[cid("web")] == block(DB_LINE)


def test_an_ambiguous_link_names_its_candidates_and_no_other_skip_does() -> None:
    web = ctr("web", net("n"), links="db gone")
    recs = [remote("c", "db", "192.0.2.8"), remote("b", "db", "192.0.2.7")]
    result = reconcile(Snapshot([web], recs, "a", bare_names=True), {}, LABEL)
    ambiguous, missing = result.skipped[cid("web")]
    assert ambiguous == Skip(cid("web"), "db", Problem.AMBIGUOUS, ("b/db", "c/db"))
    assert ambiguous.message == (
        "link db: published by several nodes; name one as node/target (b/db, c/db)")
    assert missing == Skip(cid("web"), "gone", Problem.MISSING, ())
    assert missing.message == "link gone: no such container"


def test_routine_reasons_are_those_of_containers_coming_and_going() -> None:
    # Waiting for health too: every start of a target with a healthcheck goes through it.
    assert {p for p in Problem if Skip("x", "db", p).routine} == ROUTINE == {
        Problem.MISSING, Problem.NOT_RUNNING, Problem.NOT_PUBLISHED, Problem.DETACHED,
        Problem.WAITING_HEALTH}


# --- conflicts --------------------------------------------------------------------------


def sidecar(name: str, links: str) -> Container:
    return ctr(name, network_mode="container:web", links=links)


def test_dependents_of_one_file_giving_an_alias_two_addresses_conflict() -> None:
    db2 = ctr("db2", net("n", "10.0.0.3"))
    web = ctr("web", net("n"), links="db")
    side = sidecar("side", "db2:db")
    result = reconcile(Snapshot([DB, db2, web, side]), {}, LABEL)
    assert result.conflicts == (
        Conflict(cid("web"), "db", ("web", "side"), ("10.0.0.2", "10.0.0.3")),)
    # Both lines are written all the same: the conflict is said, not resolved.
    assert result.blocks[cid("web")] == block(DB_LINE, HostLine("10.0.0.3", ("db", "db2")))


def test_an_incremental_reconcile_finds_a_conflict_come_and_go() -> None:
    """The conflicts of the files a change touches are found again; the others are kept."""
    db2 = ctr("db2", net("n", "10.0.0.3"))
    web = ctr("web", net("n"), links="db")
    calm = Snapshot([DB, db2, web, sidecar("side", "db")])
    first = reconcile(calm, {}, LABEL)
    assert first.conflicts == ()
    torn = Snapshot([DB, db2, web, sidecar("side", "db2:db")])
    second = reconcile(torn, first.blocks, LABEL, previous=first)
    assert second.replanned is not None  # incremental
    assert second.conflicts == (
        Conflict(cid("web"), "db", ("web", "side"), ("10.0.0.2", "10.0.0.3")),)
    third = reconcile(calm, second.blocks, LABEL, previous=second)
    assert third.replanned is not None and third.conflicts == ()
    # Another change elsewhere leaves the conflict found before as it was.
    app = ctr("app", net("n", "10.0.0.7"), links="db")
    fourth = reconcile(Snapshot([*torn, app]), second.blocks, LABEL, previous=second)
    assert fourth.replanned == {cid("app")}
    assert fourth.conflicts == second.conflicts
    # The file goes with its dependents (web and side removed): so does its conflict.
    gone = reconcile(Snapshot([DB, db2]), second.blocks, LABEL, previous=second)
    assert gone.replanned is not None and gone.conflicts == ()


def test_conflicts_are_per_alias_in_alias_order_and_name_each_dependent_once() -> None:
    a1, a2 = ctr("a1", net("n", "10.0.1.1")), ctr("a2", net("n", "10.0.1.2"))
    b1, b2 = ctr("b1", net("n", "10.0.2.1")), ctr("b2", net("n", "10.0.2.2"))
    web = ctr("web", net("n"), links="b1:b a1:a")
    side = sidecar("side", "b2:b a2:a")
    third = sidecar("third", "a1:a")
    result = reconcile(Snapshot([a1, a2, b1, b2, web, side, third]), {}, LABEL)
    assert result.conflicts == (
        # Dependents in the order their addresses were first seen, each named once.
        Conflict(cid("web"), "a", ("web", "third", "side"), ("10.0.1.1", "10.0.1.2")),
        Conflict(cid("web"), "b", ("web", "side"), ("10.0.2.1", "10.0.2.2")),
    )


def test_one_targets_ipv4_and_ipv6_are_one_answer_not_a_conflict() -> None:
    dual = ctr("db", net("n", "10.0.0.2", "fd00::2"))
    web, side = ctr("web", net("n"), links="db"), sidecar("side", "db")
    assert reconcile(Snapshot([dual, web, side]), {}, LABEL).conflicts == ()


def test_one_dependent_giving_an_alias_two_addresses_is_not_a_conflict() -> None:
    """Only differing dependents conflict: one label naming two targets for an alias
    is its writer's choice (the resolver takes the first)."""
    db2 = ctr("db2", net("n", "10.0.0.3"))
    web, side = ctr("web", net("n"), links="db db2:db"), sidecar("side", "other")
    assert reconcile(Snapshot([DB, db2, web, side]), {}, LABEL).conflicts == ()


def test_a_file_read_by_one_dependent_has_no_conflicts() -> None:
    db2 = ctr("db2", net("n", "10.0.0.3"))
    snapshot = Snapshot([DB, db2, ctr("web", net("n"), links="db db2:db")])
    (found,) = files_of(snapshot, plan_all(snapshot, LABEL).values()).values()
    assert conflicts(found) == []


# --- keep mode --------------------------------------------------------------------------


def test_without_keep_nothing_is_remembered_and_a_stopped_targets_line_goes() -> None:
    web = ctr("web", net("n"), links="db")
    first = reconcile(Snapshot([DB, web]), {}, LABEL)
    assert first.kept == {}
    stopped = replace(DB, state="exited", endpoints=())
    kept = {cid("web"): {"db": (DB_LINE,)}}
    result = reconcile(Snapshot([stopped, web]), first.blocks, LABEL, kept=kept)
    assert result.blocks == {cid("web"): b""}
    assert result.kept == {}


def test_keep_mode_remembers_the_engines_lines_and_writes_them_once_the_target_went() -> None:
    web = ctr("web", net("n"), links="db other")
    first = reconcile(Snapshot([DB, web]), {}, LABEL, keep=True)
    assert first.kept == {cid("web"): {"db": (DB_LINE,)}}
    stopped = replace(DB, state="exited", endpoints=())
    second = reconcile(Snapshot([stopped, web]), first.blocks, LABEL, keep=True,
                       kept=first.kept)
    assert second.blocks == {cid("web"): block(DB_LINE)}
    assert second.writes == ()
    assert second.kept == first.kept
    # And again: what was remembered is remembered, not only what the last pass saw.
    third = reconcile(Snapshot([stopped, web]), second.blocks, LABEL, keep=True,
                      kept=second.kept)
    assert third.blocks == second.blocks
    assert third.kept == first.kept


def test_keep_mode_forgets_removed_dependents_and_remembers_stopped_ones() -> None:
    web = ctr("web", net("n"), links="db")
    resting = ctr("resting", net("n"), links="db", state="exited")
    memory = {"db": (HostLine("10.0.0.7", ("db",)),)}
    kept = {cid("web"): memory, cid("resting"): memory, cid("removed"): memory}
    result = reconcile(Snapshot([DB, web, resting]), {}, LABEL, keep=True, kept=kept)
    # web's memory is this pass's answer; resting's waits for its restart; removed goes.
    assert result.kept == {cid("web"): {"db": (DB_LINE,)}, cid("resting"): memory}


def test_file_block_keeps_lines_only_in_keep_mode() -> None:
    web = ctr("web", net("n"), links="db")
    snapshot = Snapshot([replace(DB, state="exited", endpoints=()), web])
    (found,) = files_of(snapshot, plan_all(snapshot, LABEL).values()).values()
    kept = {cid("web"): {"db": (DB_LINE,)}}
    assert file_block(found, True, kept) == block(DB_LINE)
    assert file_block(found, False, kept) == b""
    assert file_block(found, True, None) == b""


# --- transform: the writer's edit -------------------------------------------------------


def test_transform_writes_a_block_that_fits_the_limit_exactly() -> None:
    new = block(DB_LINE)
    before = b"127.0.0.1\tlocalhost\n"
    overflow: list[int] = []
    after = transform(new, len(before) + len(new), overflow, b"")(before)
    assert after == before + new
    assert overflow == []


def test_transform_leaves_out_a_block_past_the_limit_and_says_how_big_it_would_be() -> None:
    new = block(DB_LINE)
    docker = b"127.0.0.1\tlocalhost\n"
    before = merge(docker, block(HostLine("10.0.0.9", ("db",))))
    overflow: list[int] = []
    limit = len(docker) + len(new) - 1
    assert transform(new, limit, overflow, b"")(before) == docker
    assert overflow == [len(docker) + len(new)]


def test_a_block_left_out_takes_what_a_racing_writer_tore_off_ours_with_it() -> None:
    new = block(DB_LINE)
    earlier = block(HostLine("10.0.0.9", ("db",)))
    docker = b"127.0.0.1\tlocalhost\n"
    forged = b"# BEGIN hostsyncd\n10.9.9.9\tforged\n# END hostsyncd\n"
    overflow: list[int] = []
    for ours in (new, earlier):
        torn = docker + forged + ours[len(forged):]
        assert transform(new, len(docker), overflow, earlier)(torn) == docker
    assert len(overflow) == 2


# --- the properties ---------------------------------------------------------------------

_IPS = [f"10.0.0.{i}" for i in range(2, 6)]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Container], dict[str, bytes]]:
    """A few targets (some stopped), dependents and sidecars linking to them at random,
    and files that hold some block or none."""
    targets = [
        ctr(f"t{i}", net("n", ip), state=draw(st.sampled_from(["running", "exited"])))
        for i, ip in enumerate(_IPS)
    ]
    specs = st.lists(st.sampled_from(["t0", "t1", "t2:t0", "t3:x", "gone"]), max_size=3)
    deps = [ctr(f"d{i}", net("n"), links=" ".join(draw(specs))) for i in range(3)]
    sides = [ctr(f"s{i}", network_mode="container:d0", links=" ".join(draw(specs)))
             for i in range(draw(st.integers(0, 2)))]
    current = {cid(f"d{i}"): draw(st.sampled_from([b"", block(HostLine(_IPS[0], ("t0",)))]))
               for i in range(3) if draw(st.booleans())}
    return targets + deps + sides, current


@settings(max_examples=examples(200), deadline=None)
@given(fleets())
def test_reconcile_writes_exactly_the_files_whose_block_differs(
    fleet: tuple[list[Container], dict[str, bytes]],
) -> None:
    containers, current = fleet
    result = reconcile(Snapshot(containers), current, LABEL)
    assert set(result.writes) == {f for f, b in result.blocks.items() if current.get(f) != b}
    # Writing what it decided makes the next pass a no-op.
    settled = {**current, **{f: result.blocks[f] for f in result.writes}}
    assert reconcile(Snapshot(containers), settled, LABEL).writes == ()
    for fid, found in result.files.items():
        lines = found.lines()
        assert result.blocks[fid] == render_block(lines)
        assert len(set(lines)) == len(lines)
        assert BEGIN not in result.blocks[fid] or lines
    # Every link is either a line's source or a skip, never both.
    for dep, found in result.plans.items():
        unresolved = [str(link.spec) for link in found.links if not link.resolved]
        assert [s.spec for s in result.skipped.get(dep, ())] == unresolved
    for conflict in result.conflicts:
        assert len(conflict.addresses) > 1 and len(conflict.dependents) > 1
