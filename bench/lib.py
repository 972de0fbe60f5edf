"""Shared harness for the benchmarks: the tests' private engine, a hostsyncd under test,
and the helpers every benchmark needs. Absolute times here are noise; ratios against
Docker's own --link, measured in the same run, are the results."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(1, str(ROOT))

from privengine import PrivateEngine  # noqa: E402

ENGINE_ROOT = Path(os.environ.get("HSD_BENCH_ROOT", "/tmp/hsdbench"))
# The bench engine of each version of the engine matrix (tests/conftest.py): root, bridge,
# CIDR. $HSD_BENCH_ROOT, $HSD_BENCH_BRIDGE and $HSD_BENCH_CIDR override the chosen one's.
ENGINES = {
    "20.10": (ENGINE_ROOT, "hsdbench0", "10.234.0.1/24"),
    "26": (Path("/tmp/hsdbench-26"), "hsdbench26", "10.245.0.1/24"),
    "28": (Path("/tmp/hsdbench-28"), "hsdbench28", "10.246.0.1/24"),
}
IMAGE = "hsdtest/busybox:1"
# Parallel API clients for creating and removing many containers: on these 2-core machines
# 4 workers halve the ~0.4 s a container takes one by one.
WORKERS = 4
# Set to "py-spy" (or "pyinstrument") to profile every daemon hostsyncd() starts; the
# profile lands next to its log.
PROFILE = os.environ.get("HSD_BENCH_PROFILE", "")


class Bench:
    """One private engine and one docker-py client for a benchmark run."""

    def __init__(self, root: Path | None = None, bridge: str | None = None,
                 cidr: str | None = None, engine: str = "20.10") -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
        default_root, default_bridge, default_cidr = ENGINES[engine]
        if root is None:  # the matrix's bench engine, which the environment may move
            env = os.environ.get
            root = Path(env("HSD_BENCH_ROOT") or default_root)
            bridge = bridge or env("HSD_BENCH_BRIDGE") or default_bridge
            cidr = cidr or env("HSD_BENCH_CIDR") or default_cidr
        self.engine = PrivateEngine(root, bridge=bridge or default_bridge,
                                    cidr=cidr or default_cidr, engine=engine)
        self.engine.ensure_running()
        self.engine.ensure_image(IMAGE)
        self.api = docker.APIClient(base_url=self.engine.host, version="auto", timeout=60)
        self.prefix = f"b{os.getpid() % 10000}-"
        self.created: list[str] = []

    # -- containers ---------------------------------------------------------------------

    def run(self, name: str, *, labels: dict[str, str] | None = None,
            links: dict[str, str] | None = None, cmd: list[str] | None = None,
            network: str | None = None, healthcheck: dict[str, Any] | None = None) -> str:
        """`healthcheck`: the Engine API's (Test, Interval in ns, Retries, ...)."""
        host_config = self.api.create_host_config(links=links or {}, network_mode=network)
        created = self.api.create_container(
            IMAGE, cmd or ["sleep", "3600"], name=self.prefix + name,
            labels=labels or {}, host_config=host_config, healthcheck=healthcheck,
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

    def client(self) -> docker.APIClient:
        """A client of its own, for a thread: docker-py clients are not thread-safe."""
        return docker.APIClient(base_url=self.engine.host, version=self.api.api_version,
                                timeout=60)

    def run_many(self, specs: list[dict[str, Any]], workers: int = WORKERS) -> list[str]:
        """Create and start many containers in parallel (keyword arguments of `run` per
        spec, `name` included); ids in spec order. Addresses come in no particular order."""
        local = threading.local()

        def one(spec: dict[str, Any]) -> str:
            api = getattr(local, "api", None)
            if api is None:
                api = local.api = self.client()
            spec = dict(spec)
            host_config = api.create_host_config(links=spec.get("links") or {},
                                                 network_mode=spec.get("network"))
            created = api.create_container(
                IMAGE, spec.get("cmd") or ["sleep", "3600"], name=self.prefix + spec["name"],
                labels=spec.get("labels") or {}, host_config=host_config,
            )
            self.created.append(created["Id"])
            api.start(created["Id"])
            return created["Id"]

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, specs))

    def remove(self, cids: Iterable[str], workers: int = WORKERS) -> None:
        """Force-remove these containers, in parallel."""
        doomed = list(cids)
        local = threading.local()

        def one(cid: str) -> None:
            api = getattr(local, "api", None)
            if api is None:
                api = local.api = self.client()
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(cid, force=True)

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, doomed))
        gone = set(doomed)
        self.created[:] = [c for c in self.created if c not in gone]

    def others(self) -> list[str]:
        """Names of containers on the bench engine that this run did not create."""
        mine = set(self.created)
        return [c["Names"][0] for c in self.api.containers(all=True) if c["Id"] not in mine]

    def cleanup(self) -> None:
        self.remove(list(reversed(self.created)))
        self.created.clear()

    def machine(self) -> dict[str, object]:
        version = self.api.version()
        return {
            "cores": os.cpu_count(),
            "engine": version.get("Version"),
            "api": version.get("ApiVersion"),
            "kernel": os.uname().release,
            "python": sys.version.split()[0],
            "commit": git_commit(),
            "code_digest": code_digest(),
            "loadavg": os.getloadavg(),
        }


def git_commit() -> str:
    """`git rev-parse --short HEAD`, with "+dirty" when the code measured (hostsyncd/,
    bench/ but its results, scripts/) differs from that commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "hostsyncd", "bench", "scripts",
                ":(exclude)bench/results")
    return commit + ("+dirty" if dirty else "")


def code_digest() -> str:
    """sha256 (12 hex) of hostsyncd's source as it is on disk: a run can tell whether the
    code it measured changed under it."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "hostsyncd").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def hostsyncd(bench: Bench, workdir: Path, env: dict[str, str] | None = None,
              **sections: dict[str, object]) -> Iterator[subprocess.Popen[bytes]]:
    """The real daemon, as a user runs it, against the bench engine; ready after its
    first full resync. Its log is workdir/hostsyncd.log (see `log_events`), its state
    file workdir/state.json unless [daemon] says otherwise; env adds to the environment
    (NOTIFY_SOCKET, WATCHDOG_USEC, ...)."""
    config = {
        "daemon": {"state_file": str(workdir / "state.json")},
        "docker": {"url": bench.engine.host, "containers_root": str(bench.engine.containers_root)},
        "log": {"level": "info", "output": "json"},
        **sections,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    path.write_text(_toml(config))
    logfile = workdir / "hostsyncd.log"
    log = logfile.open("wb")
    environ = {**os.environ, **(env or {})}
    if not env or "NOTIFY_SOCKET" not in env:
        environ.pop("NOTIFY_SOCKET", None)
        environ.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostsyncd", "run", "--config", str(path)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=environ,
    )
    profiler = None
    try:
        wait_for(lambda: b"engine connected" in logfile.read_bytes() or proc.poll() is not None,
                 20)
        if proc.poll() is not None:
            raise RuntimeError(f"hostsyncd exited {proc.returncode}: {logfile.read_text()}")
        wait_for(lambda: any(e.get("event") == "ready" for e in log_events(logfile)), 60, 0.05)
        time.sleep(0.2)
        if PROFILE:
            profiler = start_profiler(proc.pid, workdir / f"profile-{proc.pid}", PROFILE)
        yield proc
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_alone(measure: Callable[..., dict[str, Any]], **params: Any) -> None:
    """A benchmark on its own (`python3 bench/<name>.py`): the bench engine, one daemon,
    the result printed as JSON without its raw samples."""
    import tempfile

    bench = Bench()
    try:
        with hostsyncd(bench, Path(tempfile.mkdtemp())):
            out = measure(bench, **params)
        print(json.dumps({k: v for k, v in out.items() if k != "raw_ms"}, indent=1))
    finally:
        bench.cleanup()


def log_events(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The JSON lines of a daemon log from byte offset start (others skipped)."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return []
    events = []
    for line in data.splitlines():
        if line.startswith(b"{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


# -- processes ----------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (utime + stime, all threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmHWM, VmRSS, ...), in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key] = int(parts[0])
    return out


def start_profiler(pid: int, out: Path, kind: str = "py-spy") -> subprocess.Popen[bytes]:
    """Attach py-spy to a running daemon until stop_profiler; it writes collapsed stacks
    (flamegraph input, one "frame;frame;... count" line per stack) to out.txt.

    kind "py-spy" samples on-CPU stacks only; "py-spy-idle" also the waiting ones (for
    where wall time goes). pyinstrument cannot attach to a running process."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    idle = ["--idle"] if kind.endswith("idle") else []
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", "500", "--threads", *idle,
         "--format", "raw", "--output", f"{out}.txt", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(20)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()


def profile_summary(path: Path, top: int = 15) -> dict[str, object]:
    """Samples, and the functions with the most samples inclusive and exclusive, from
    py-spy's collapsed stacks. Frames read "function (file:line)"; lines are dropped."""
    inclusive: dict[str, int] = {}
    exclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        exclusive[frames[-1]] = exclusive.get(frames[-1], 0) + n

    def best(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked]

    return {"samples": total, "inclusive_pct": best(inclusive), "self_pct": best(exclusive)}


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/hostsyncd/", "site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; counts what is sent."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.messages += [(now, m) for m in data.decode(errors="replace").split("\n")]

    def count(self, message: str, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for t, m in list(self.messages) if m == message and since <= t <= until)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self.sock.close()
        self.path.unlink(missing_ok=True)


class CloseWriteCounter:
    """Counts IN_CLOSE_WRITE per file with inotify: one per write by Docker (truncate and
    write, then close) and one per write by hostsyncd (it opens for writing only to
    write), so both sides' writes are counted the same way.

    The kernel merges an event into the last queued one when they are identical, which
    would hide back-to-back writes; IN_OPEN is watched too so that two close-writes are
    never adjacent (every write opens the file first), and a thread drains the queue."""

    IN_CLOSE_WRITE = 0x8
    IN_OPEN = 0x20
    IN_NONBLOCK = 0o4000

    def __init__(self, files: dict[str, Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.keys: dict[int, str] = {}
        for key, path in files.items():
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path),
                                              self.IN_CLOSE_WRITE | self.IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
            self.keys[wd] = key
        self.counts = dict.fromkeys(files, 0)
        self.overflows = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        while not self._stopping.is_set():
            select.select([self.fd], [], [], 0.1)
            self.drain()

    def drain(self) -> dict[str, int]:
        """Read the pending events; the counts so far."""
        with self._lock:
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    return dict(self.counts)
                offset = 0
                while offset < len(data):
                    wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                    offset += 16 + length
                    if mask & 0x4000:  # IN_Q_OVERFLOW
                        self.overflows += 1
                    if mask & self.IN_CLOSE_WRITE and wd in self.keys:
                        self.counts[self.keys[wd]] += 1

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self.drain()
        os.close(self.fd)


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


def time_start(bench: Bench, cid: str, files: dict[str, Path], old_ip: str) -> dict[str, float]:
    """Start the container and poll every file until its "db" line leaves old_ip: seconds
    from the start call, per file. One poller for all, so every side sees the same start."""
    seen: dict[str, float] = {}
    starter = threading.Thread(target=bench.api.start, args=(cid,))
    t0 = time.perf_counter()
    starter.start()
    deadline = t0 + 10
    while len(seen) < len(files) and time.perf_counter() < deadline:
        for side, path in files.items():
            if side in seen:
                continue
            ip = alias_ip(path.read_bytes(), "db")
            if ip is not None and ip != old_ip:
                seen[side] = time.perf_counter() - t0
        time.sleep(0.0002)
    starter.join()
    missing = set(files) - set(seen)
    if missing:
        raise RuntimeError(f"new IP never reached {missing}")
    return seen


def alias_ip(content: bytes, alias: str) -> str | None:
    """The IPv4 address a hosts file gives the alias (first match, as resolvers do)."""
    for line in content.splitlines():
        fields = line.split()
        if len(fields) >= 2 and alias.encode() in fields[1:] and b":" not in fields[0]:
            return fields[0].decode()
    return None


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = intercept + slope * x, with R²."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"slope": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "median": statistics.median(ordered), "p95": p95,
            "min": ordered[0], "max": ordered[-1]}
