"""The daemon as a systemd service: journald entries, sd_notify, SIGHUP, SIGTERM, and the
operator views (`status`, `graph`), against the real engine and a real journald."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .util import LINKS, block_is, line

pytestmark = pytest.mark.engine

JOURNALD = Path("/lib/systemd/systemd-journald")
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


@pytest.fixture(scope="session")
def journald() -> None:
    """A real journald: the machine's own if it runs, else one started standalone."""
    if not _journal_answers():
        assert JOURNALD.exists(), "systemd-journald is installed by scripts/ensure-deps.sh"
        JOURNAL_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        subprocess.Popen([str(JOURNALD)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not _journal_answers():
            if time.monotonic() > deadline:
                pytest.fail("systemd-journald did not start")
            time.sleep(0.1)


def _journal_answers() -> bool:
    if not JOURNAL_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(str(JOURNAL_SOCKET))
        except OSError:
            return False
    return True


def journal(pid: int, *matches: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", f"_PID={pid}", *matches],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return [json.loads(raw) for raw in out.stdout.splitlines() if raw.startswith("{")]


class NotifySocket:
    """The datagram socket systemd would hold, as NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            self.messages.append((time.monotonic(), data.decode()))
        return self.messages

    def wait_for(self, text: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, message in self.messages:
                if text in message.split("\n"):
                    return at
            self.collect(0.05)
        pytest.fail(f"no {text!r} within {timeout}s; got {[m for _, m in self.messages]}")

    def sent(self, prefix: str) -> list[str]:
        return [m for _, m in self.messages for m in m.split("\n") if m.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_journald_entries_are_native_with_container_fields(
    journald, containers, daemon, wait_until
):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data bad#spec"})
    d = daemon.start(output="journald", level="info")
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), "data", db)]))

    def written() -> list[dict[str, str]]:
        return journal(d.pid, "SYSLOG_IDENTIFIER=hostsyncd", f"CONTAINER_NAME={web}")

    entries = wait_until(lambda: len(written()) >= 2 and written(), timeout=30,
                         what="journal entries")
    update = next(e for e in entries if e["MESSAGE"].startswith("hosts file updated"))
    assert update["PRIORITY"] == "6"
    assert update["CONTAINER_ID"] == containers.id(web)
    assert json.loads(update["ADDED"]) == [line(containers.ip(db), "data", db)]
    assert f"container_name={web}" in update["MESSAGE"]
    invalid = [e for e in entries if "invalid link spec" in e["MESSAGE"]]
    assert len(invalid) == 1, "reported once"
    assert invalid[0]["PRIORITY"] == "4"
    # Nothing went to stderr as text: the entries are native.
    assert "hosts file updated" not in d.stderr_text()


def test_ready_after_first_sync_then_watchdog_pings_at_the_asked_rate(
    containers, daemon, notify
):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: db})
    path = containers.hosts_path(web)
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    notify.wait_for("READY=1")
    # READY=1 comes only after the first full sync: the block is already there.
    assert f"{containers.ip(db)}\t{db}" in path.read_text()
    status = notify.sent("STATUS=")
    # The engine is shared with other tests: count-agnostic, but the shape is fixed.
    assert status and re.fullmatch(
        r"STATUS=\d+ dependents, \d+ links(, \d+ unresolved)?, engine connected", status[-1]
    ), status
    notify.messages.clear()
    notify.collect(3.0)
    pings = [at for at, m in notify.messages if "WATCHDOG=1" in m.split("\n")]
    # Every WATCHDOG_USEC/2 = 0.2 s: 15 in 3 s, allowing for a busy machine.
    assert 11 <= len(pings) <= 16, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.45
    d.stop()


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    containers, daemon, notify, wait_until
):
    db = containers.run("db")
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)}, label="hostsyncd.links")
    notify.wait_for("READY=1")
    notify.messages.clear()

    # A good config: the new label key takes effect.
    d.config.write_text(d.config.read_text().replace('"hostsyncd.links"', '"example.links"'))
    d.proc.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1")
    notify.wait_for("READY=1")
    d.wait_log(lambda e: e["event"] == "config reloaded", what="config reloaded")
    web = containers.run("web", labels={"example.links": db})
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), db)]))

    # A bad config: logged, and the daemon goes on with the one it has.
    notify.messages.clear()
    good = d.config.read_text()
    d.config.write_text(good + "\n[links]\nbogus = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    notify.wait_for("READY=1")
    failure = d.wait_log(lambda e: e["event"].startswith("config reload failed"))
    assert "links" in failure["error"]
    assert d.alive()
    api = containers.run("api", labels={"example.links": db})
    wait_until(block_is(containers.hosts_path(api), [line(containers.ip(db), db)]))


def test_sigterm_sends_stopping_and_exits_cleanly(containers, daemon, notify):
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY=1")
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    # The wait is only a backstop: the exit must come within 5 s, which the duration
    # checks (a wait(5) alone would raise before a slow exit could be measured).
    assert d.proc.wait(10) == 0
    took = time.monotonic() - started
    assert took < 5, f"SIGTERM to exit took {took:.1f} s"
    notify.collect(0.2)
    assert notify.sent("STOPPING=1")


def test_unreachable_engine_at_start_is_ready_and_says_so(daemon, notify, tmp_path):
    d = daemon.start(env={"NOTIFY_SOCKET": str(notify.path)},
                     url=f"unix://{tmp_path}/nothing.sock")
    notify.wait_for("READY=1")
    assert any("engine unreachable since" in s for s in notify.sent("STATUS="))
    assert d.alive()


def test_status_shows_engine_dependents_last_write_and_errors(containers, daemon, wait_until):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data gone bad#spec"})
    d = daemon.start()
    wait_until(block_is(containers.hosts_path(web), [line(containers.ip(db), "data", db)]))

    def status_json() -> dict | None:
        out = daemon.cli("status", "--config", str(d.config), "--json")
        if out.returncode != 0:
            return None
        data = json.loads(out.stdout)
        mine = [dep for dep in data["dependents"] if dep["name"] == web]
        return (data, mine[0]) if mine and mine[0]["last_write"] else None

    data, dep = wait_until(status_json, what="a state file with the dependent")
    assert data["engine"]["connected"] is True
    assert data["pid"] == d.pid
    assert dep["name"] == web
    assert dep["last_write"]["added"] == [line(containers.ip(db), "data", db)]
    problems = {link["spec"]: link["problem"] for link in dep["links"]}
    assert problems == {f"{db}:data": None, "gone": "no such container"}
    assert any("bad#spec" in err for err in dep["invalid"])
    assert any("bad#spec" in err["message"] for err in data["recent_errors"])
    text = daemon.cli("status", "--config", str(d.config))
    assert text.returncode == 0
    assert "connected" in text.stdout
    assert f"{web} (" in text.stdout
    assert "!! gone: no such container" in text.stdout


def test_status_without_a_daemon_fails_clearly(daemon):
    config = daemon.write_config()
    out = daemon.cli("status", "--config", str(config))
    assert out.returncode != 0
    assert "no state from a running daemon" in out.stderr
    assert "Traceback" not in out.stderr


def test_graph_prints_the_live_link_graph_in_three_formats(containers, daemon):
    db = containers.run("db")
    containers.run("web", labels={LINKS: f"{db}:data gone bad#spec"})
    config = daemon.write_config()
    text = daemon.cli("graph", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert f"-> {db}:data  =>  {db}  via bridge {containers.ip(db)}" in text.stdout
    assert "!! gone  unresolved: no such container" in text.stdout
    assert "xx invalid link spec 'bad#spec'" in text.stdout
    dot = daemon.cli("graph", "--config", str(config), "--format", "dot")
    assert dot.returncode == 0
    rendered = subprocess.run([shutil.which("dot") or "dot", "-Tsvg"], input=dot.stdout,
                              capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    assert "<svg" in rendered.stdout
    data = json.loads(daemon.cli("graph", "--config", str(config), "--format", "json").stdout)
    names = {dep["name"] for dep in data["dependents"]}
    assert containers.name("web") in names


def test_auto_output_is_json_lines_on_a_pipe_and_journald_under_systemd(
    journald, daemon, engine
):
    """`log.output = "auto"`: outside systemd and not on a TTY, JSON lines on stderr;
    with INVOCATION_ID set (as systemd sets it), native journald entries instead."""
    d = daemon.start(output="auto")
    d.wait_log(lambda e: e["event"] == "engine connected", what="JSON log on a pipe")
    under_systemd = daemon.start(output="auto", env={"INVOCATION_ID": "0123abcd"})
    found = None
    deadline = time.monotonic() + 10
    while found is None and time.monotonic() < deadline:
        entries = journal(under_systemd.pid, "SYSLOG_IDENTIFIER=hostsyncd")
        found = next((e for e in entries if e["MESSAGE"].startswith("engine connected")), None)
        time.sleep(0.1)
    assert found is not None, "no journald entry from the daemon started as under systemd"
    assert "engine connected" not in under_systemd.stderr_text()
