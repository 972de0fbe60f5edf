"""Fixtures for the fault and hostile-input suite (tests/faults).

- `results`: a dict the test fills with its figures (how often a fault was tried, how
  often the daemon survived it, how much data was lost, timings). It is written, with the
  test's outcome and duration, to `tests/faults/.results/<test>.json` at teardown, also
  when the test fails.
- `notify`: a NOTIFY_SOCKET (the datagram socket systemd would hold); `on_ready(fn)` runs
  fn the moment READY=1 arrives, to see the files as they are then.
- `tool(name)`: the path of a command the test needs; fails (never skips) without it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.test_service import NotifySocket

RESULTS = Path(__file__).resolve().parent / ".results"
_OUTCOME = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_OUTCOME, {})[report.when] = report.outcome
    return report


@pytest.fixture
def results(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = {"test": request.node.name}
    started = time.monotonic()
    yield data
    outcomes = request.node.stash.get(_OUTCOME, {})
    data["outcome"] = "failed" if "failed" in outcomes.values() else outcomes.get("call", "?")
    data["seconds"] = round(time.monotonic() - started, 2)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{request.node.name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class Notify(NotifySocket):
    def on_ready(self, fn: Callable[[], Any], timeout: float = 15) -> tuple[float, Any]:
        """Block until READY=1 arrives, then at once return (arrival time, fn())."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            at = time.monotonic()
            message = data.decode()
            self.messages.append((at, message))
            if "READY=1" in message.split("\n"):
                return at, fn()
        pytest.fail(f"no READY=1 within {timeout}s; got {[m for _, m in self.messages]}")

    def drain(self) -> list[str]:
        """Take whatever is queued now without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(4096)
                except BlockingIOError:
                    break
                self.messages.append((time.monotonic(), data.decode()))
        finally:
            self.sock.setblocking(True)
        return [m for _, m in self.messages]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    sock = Notify(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def tool() -> Callable[[str], str]:
    def find(name: str) -> str:
        path = shutil.which(name)
        assert path is not None, f"{name} is needed by this test (scripts/ensure-deps.sh)"
        return path

    return find
