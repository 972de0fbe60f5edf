"""Shared harness for the benchmarks: the tests' private engine, a hostsyncd under test,
and the helpers every benchmark needs. Absolute times here are noise; ratios against
Docker's own --link, measured in the same run, are the results."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from privengine import PrivateEngine  # noqa: E402

ENGINE_ROOT = Path(os.environ.get("HSD_BENCH_ROOT", "/tmp/hsdbench"))
IMAGE = "hsdtest/busybox:1"


class Bench:
    """One private engine and one docker-py client for a benchmark run."""

    def __init__(self) -> None:
        self.engine = PrivateEngine(ENGINE_ROOT, bridge="hsdbench0", cidr="10.234.0.1/24")
        self.engine.ensure_running()
        self.engine.ensure_image(IMAGE)
        self.api = docker.APIClient(base_url=self.engine.host, version="auto", timeout=60)
        self.prefix = f"b{os.getpid() % 10000}-"
        self.created: list[str] = []

    # -- containers ---------------------------------------------------------------------

    def run(self, name: str, *, labels: dict[str, str] | None = None,
            links: dict[str, str] | None = None, cmd: list[str] | None = None,
            network: str | None = None) -> str:
        host_config = self.api.create_host_config(links=links or {}, network_mode=network)
        created = self.api.create_container(
            IMAGE, cmd or ["sleep", "3600"], name=self.prefix + name,
            labels=labels or {}, host_config=host_config,
        )
        cid = created["Id"]
        self.created.append(cid)
        self.api.start(cid)
        return cid

    def name(self, name: str) -> str:
        return self.prefix + name

    def ip(self, cid: str) -> str:
        nets = self.api.inspect_container(cid)["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def hosts_path(self, cid: str) -> Path:
        return self.engine.containers_root / cid / "hosts"

    def cleanup(self) -> None:
        for cid in reversed(self.created):
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_container(cid, force=True)
        self.created.clear()

    def machine(self) -> dict[str, object]:
        version = self.api.version()
        return {
            "cores": os.cpu_count(),
            "engine": version.get("Version"),
            "api": version.get("ApiVersion"),
            "kernel": os.uname().release,
            "python": sys.version.split()[0],
        }


@contextlib.contextmanager
def hostsyncd(bench: Bench, workdir: Path, **sections: dict[str, object]) -> Iterator[
        subprocess.Popen[bytes]]:
    """The real daemon, as a user runs it, against the bench engine; ready after its
    first full resync."""
    config = {
        "docker": {"url": bench.engine.host, "containers_root": str(bench.engine.containers_root)},
        "log": {"level": "info", "output": "json"},
        **sections,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    path.write_text(_toml(config))
    log = (workdir / "hostsyncd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostsyncd", "run", "--config", str(path)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        wait_for(lambda: b"engine connected" in (workdir / "hostsyncd.log").read_bytes(), 20)
        time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _toml(data: dict[str, dict[str, object]]) -> str:
    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def alias_ip(content: bytes, alias: str) -> str | None:
    """The IPv4 address a hosts file gives the alias (first match, as resolvers do)."""
    for line in content.splitlines():
        fields = line.split()
        if len(fields) >= 2 and alias.encode() in fields[1:] and b":" not in fields[0]:
            return fields[0].decode()
    return None


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "median": statistics.median(ordered), "p95": p95,
            "min": ordered[0], "max": ordered[-1]}
