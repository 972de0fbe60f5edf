"""Fixtures shared by tests/unit and tests/integration.

Nothing here starts an engine unless a test asks for `engine` (directly or through
`containers`, `networks` or `daemon`), so unit tests stay engine-free.

Integration fixtures:
- `engine`: a private engine of scripts/privengine.py, started once and reused across
  runs; `engine.version` is "20.10", "26" or "28". Tests using it run once per engine of
  the matrix (`--engines 20.10,26` or $HSD_ENGINES; default all three; ids end in
  `[docker26]` and the like), except tests/cluster, which stays on 20.10. Each version has
  its own root, bridge and CIDR (MATRIX below; 20.10's at $HSD_TEST_ROOT, default
  /tmp/hsdtest, bridge $HSD_TEST_BRIDGE, address $HSD_TEST_CIDR; 26's and 28's at
  $HSD_TEST_ROOT_26 and so on). If an engine cannot start, tests using it fail (never
  skip).
- `containers`: `containers.run("web", labels=...)` runs a container named
  `<prefix>web`, where the prefix (`t<6 hex>-`) is unique to the test; everything it ran
  is removed at teardown. Helpers take short or full names.
- `networks`: `networks.create("n1", ipv6=True)` makes `<prefix>n1` with subnet
  10.233.<x>.0/24 (and fd00:231:<x in hex>::/64), removed at teardown. x is one that no
  route on the machine uses and that no network of this process holds, whatever its
  engine: engines do not see each other's subnets, so only that keeps them apart.
- `daemon`: `daemon.start(**config)` runs `python -m hostsyncd run --config ...` with
  JSON logs captured; `daemon.cli(...)` runs one-shot commands.
- `podman`: a private rootful Podman service (scripts/privpodman.py), started once and
  reused across runs; tests/integration/test_podman.py uses it.
- `wait_until(fn, timeout=10, interval=0.02, what=...)`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LINKS_LABEL = "hostsyncd.links"
OWNER_LABEL = "hsdtest.owner"
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none", "default"})


def load_script(name: str) -> Any:
    """A harness from scripts/ (stdlib only, also run as a command) as a module."""
    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # the harnesses import scripts/proctools.py
    return importlib.import_module(name)


privengine = load_script("privengine")
privpodman = load_script("privpodman")


# -- failure reports ----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash.setdefault(_FAILED, set()).add(report.when)
    return report


_FAILED = pytest.StashKey[set]()


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.node.stash.get(_FAILED, set()))


# -- waiting --------------------------------------------------------------------------------


def _shorten(value: Any, limit: int = 3000) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit // 2] + "\n...\n" + text[-limit // 2 :]


def wait_until(
    fn: Callable[[], Any],
    timeout: float = 10,
    interval: float = 0.02,
    what: str | None = None,
    show: Callable[[], Any] | None = None,
) -> Any:
    """Call fn until it returns something truthy and return that; fail after timeout.

    An exception from fn counts as "not yet" (files and containers come and go while the
    daemon works); the failure message shows the last value or exception, and what
    `show()` returns then, if given (e.g. the file's bytes).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except Exception as exc:  # noqa: BLE001 - reported below
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    desc = what or getattr(fn, "__name__", "condition")
    shown = f"{type(last).__name__}: {last}" if isinstance(last, Exception) else _shorten(last)
    if show is not None:
        try:
            shown += f"\nshown: {_shorten(show())}"
        except Exception as exc:  # noqa: BLE001 - only a diagnostic
            shown += f"\nshown: {type(exc).__name__}: {exc}"
    pytest.fail(f"timed out after {timeout}s waiting for {desc}; last value:\n{shown}",
                pytrace=False)  # fmt: skip


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """wait_until(fn, timeout=10, interval=0.02, what=None) -> fn's truthy value."""
    return wait_until


# -- engine -------------------------------------------------------------------------------


# The engine matrix: every engine version with the root, bridge and CIDR of its private
# engine. 20.10 is the machine's own dockerd (Debian 12); 26 and 28 are Debian 13's and
# unstable's, fetched by scripts/fetch-engines.sh. $HSD_TEST_ROOT, $HSD_TEST_BRIDGE and
# $HSD_TEST_CIDR override 20.10's, and the same names with _26 or _28 appended the others'.
MATRIX = {
    "20.10": ("/tmp/hsdtest", "hsdtest0", "10.231.0.1/24"),
    "26": ("/tmp/hsdtest-26", "hsdtest26", "10.238.0.1/24"),
    "28": ("/tmp/hsdtest-28", "hsdtest28", "10.239.0.1/24"),
}
# Suites that stay on 20.10 whatever the matrix says: the cluster suite's three hosts.
SINGLE_ENGINE_DIRS = ("cluster",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engines",
        default=None,
        help="comma-separated engine versions the engine tests run against (of "
        f"{', '.join(MATRIX)}); default $HSD_ENGINES, else all of them",
    )


def selected_engines(config: pytest.Config) -> list[str]:
    raw = config.getoption("--engines") or os.environ.get("HSD_ENGINES") or ",".join(MATRIX)
    versions = [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in versions if v not in MATRIX]
    if unknown or not versions:
        raise pytest.UsageError(f"unknown engine(s) {unknown or raw!r}; known: {', '.join(MATRIX)}")
    return list(dict.fromkeys(versions))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every test that uses the engine (directly or through containers, networks, daemon)
    # runs once per selected engine; the id shows which ("...[docker26]"). Session scope:
    # pytest groups the tests by engine, so each engine starts once per run.
    if "engine" not in metafunc.fixturenames:
        return
    if Path(str(metafunc.definition.path)).parent.name in SINGLE_ENGINE_DIRS:
        return
    versions = selected_engines(metafunc.config)
    if metafunc.definition.get_closest_marker("one_engine"):
        # Minutes-long soak-like checks of the daemon's own bounds (memory over churn, a
        # fighting container): what they measure does not depend on the engine version,
        # and three runs would cost CI a quarter of an hour. The newest selected engine.
        versions = versions[-1:]
    metafunc.parametrize("engine", versions, indirect=True, scope="session",
                         ids=[f"docker{v}" for v in versions])  # fmt: skip


def engine_settings(version: str) -> tuple[Path, str, str]:
    """(root, bridge, cidr) of this version's private test engine, env overrides applied."""
    root, bridge, cidr = MATRIX[version]
    suffix = "" if version == privengine.SYSTEM_ENGINE else f"_{version}"
    return (
        Path(os.environ.get(f"HSD_TEST_ROOT{suffix}") or root),
        os.environ.get(f"HSD_TEST_BRIDGE{suffix}") or bridge,
        os.environ.get(f"HSD_TEST_CIDR{suffix}") or cidr,
    )


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Any:
    version = getattr(request, "param", privengine.SYSTEM_ENGINE)
    root, bridge, cidr = engine_settings(version)
    eng = privengine.PrivateEngine(root, bridge=bridge, cidr=cidr, engine=version)
    return started_engine(eng, f"private Docker {version} engine at {root}")


def started_engine(eng: Any, what: str) -> Any:
    """The engine, running and with the test image; if it cannot start, the test fails
    (never skips), showing the engine's log."""
    try:
        eng.ensure_running()
        eng.ensure_image()
    except Exception as exc:  # noqa: BLE001 - any failure to start is a test failure
        pytest.fail(f"{what} is unavailable: {exc}\n--- tail of {eng.logfile} ---\n"
                    f"{eng.log_tail()}", pytrace=False)  # fmt: skip
    return eng


@pytest.fixture(scope="session")
def podman() -> Any:
    """A private rootful `podman system service` (scripts/privpodman.py) at
    $HSD_PODMAN_ROOT (default /tmp/hsdpodman), its network on $HSD_PODMAN_BRIDGE and
    $HSD_PODMAN_CIDR (default hsdpod0, 10.219.0.0/24). Fails (never skips) if it cannot
    start."""
    pod = privpodman.PrivatePodman()
    return started_engine(pod, f"private Podman service at {pod.root}")


@pytest.fixture
def prefix() -> str:
    """Unique per test, so tests never collide with each other or with leftovers."""
    return f"t{secrets.token_hex(3)}-"


# -- networks -----------------------------------------------------------------------------


@dataclass
class Net:
    name: str
    x: int
    subnet: str
    subnet6: str | None

    def addr(self, n: int) -> str:
        return f"10.233.{self.x}.{n}"

    def addr6(self, n: int) -> str:
        return f"fd00:231:{self.x:x}::{n:x}"

    def __str__(self) -> str:
        return self.name


class Networks:
    # The x of every 10.233.<x>.0/24 this process created and has not removed yet, on any
    # engine: another engine's network may not have a route yet (its bridge comes with
    # its first container on some versions).
    _taken: set[int] = set()  # noqa: RUF012 - shared on purpose

    def __init__(self, engine: Any, prefix: str) -> None:
        self.engine = engine
        self.prefix = prefix
        self.created: list[str] = []
        self._xs: dict[str, int] = {}

    def name(self, short: str) -> str:
        if short in BUILTIN_NETWORKS or short.startswith(self.prefix):
            return short
        return self.prefix + short

    def _used_x(self) -> set[int]:
        used = set()
        routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True)
        for match in re.finditer(r"\b10\.233\.(\d+)\.", routes.stdout):
            used.add(int(match.group(1)))
        return used

    def create(self, name: str, *, ipv6: bool = False, args: Sequence[str] = ()) -> Net:
        """A user network with its own 10.233.<x>.0/24 (plus fd00:231:<x>::/64 with ipv6)."""
        full = self.name(name)
        last_error = ""
        for _ in range(8):
            free = sorted(set(range(10, 250)) - self._used_x() - Networks._taken)
            x = free[secrets.randbelow(len(free))]
            subnet, subnet6 = f"10.233.{x}.0/24", f"fd00:231:{x:x}::/64" if ipv6 else None
            cmd = ["network", "create", "--subnet", subnet]
            if ipv6:
                cmd += ["--ipv6", "--subnet", str(subnet6)]
            proc = self.engine.docker(*cmd, *args, full, check=False)
            if proc.returncode == 0:
                self.created.append(full)
                self._xs[full] = x
                Networks._taken.add(x)
                return Net(full, x, subnet, subnet6)
            last_error = proc.stderr.decode(errors="replace")
            if "overlap" not in last_error.lower():
                break
        pytest.fail(f"docker network create {full} failed: {last_error}")

    __call__ = create

    def cleanup(self) -> None:
        for name in reversed(self.created):
            proc = self.engine.docker("network", "inspect", "-f", "{{json .Containers}}", name,
                                      check=False)  # fmt: skip
            if proc.returncode != 0:  # gone already (the test removed it)
                Networks._taken.discard(self._xs.pop(name, -1))
                continue
            for cid in json.loads(proc.stdout or b"{}") or {}:
                self.engine.docker("network", "disconnect", "-f", name, cid, check=False)
            if self.engine.docker("network", "rm", name, check=False).returncode == 0:
                Networks._taken.discard(self._xs.pop(name, -1))


@pytest.fixture
def networks(engine: Any, prefix: str) -> Iterator[Networks]:
    nets = Networks(engine, prefix)
    yield nets
    nets.cleanup()


# -- containers ---------------------------------------------------------------------------


class Containers:
    """Runs test containers and reads what they see. Names may be short or full."""

    def __init__(self, engine: Any, prefix: str, image: str, networks: Networks) -> None:
        self.engine = engine
        self.prefix = prefix
        self.image = image
        self.networks = networks

    # names
    def name(self, short: str) -> str:
        return short if short.startswith(self.prefix) else self.prefix + short

    def network_name(self, network: str) -> str:
        if network.startswith("container:"):
            return "container:" + self.name(network.split(":", 1)[1])
        return self.networks.name(network)

    # docker
    def docker(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return self.engine.docker(*args, **kwargs)

    def run(
        self,
        name: str,
        *args: str,
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
        image: str | None = None,
        cmd: Sequence[str] = ("sleep", "3600"),
        stop_timeout: int | None = 1,
        health_cmd: str | None = None,
        health_interval: str = "300ms",
        create_only: bool = False,
    ) -> str:
        """`docker run -d` (`docker create` with create_only); returns the full name.
        `args` go before the image.

        stop_timeout defaults to 1 s: busybox sleep ignores SIGTERM, and an engine stopping
        waits that long for each running container. `health_cmd` gives the container a
        HEALTHCHECK (a shell command) run every `health_interval`, one failure making it
        unhealthy: `test -f /ok`, toggled with `exec(name, "touch", "/ok")`, is the usual.
        """
        full = self.name(name)
        argv = ["create" if create_only else "run", *([] if create_only else ["-d"]),
                "--name", full, "--label", f"{OWNER_LABEL}={self.prefix}"]
        if stop_timeout is not None:
            argv += ["--stop-timeout", str(stop_timeout)]
        if health_cmd is not None:
            argv += ["--health-cmd", health_cmd, "--health-interval", health_interval,
                     "--health-retries", "1"]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        if network is not None:
            argv += ["--network", self.network_name(network)]
        argv += [*args, image or self.image, *cmd]
        self.docker(*argv)
        return full

    __call__ = run

    def inspect(self, name: str) -> dict[str, Any]:
        out = self.docker("inspect", "--type", "container", self.name(name)).stdout
        return json.loads(out)[0]

    def id(self, name: str) -> str:
        return self.inspect(name)["Id"]

    def state(self, name: str) -> str:
        return self.inspect(name)["State"]["Status"]

    def health(self, name: str) -> str:
        """The healthcheck's status as the engine says it ("" without one)."""
        return (self.inspect(name)["State"].get("Health") or {}).get("Status", "")

    def endpoints(self, name: str) -> dict[str, dict[str, Any]]:
        return self.inspect(name)["NetworkSettings"].get("Networks") or {}

    def _endpoint(self, name: str, network: str | None) -> dict[str, Any]:
        eps = self.endpoints(name)
        if network is None:
            if len(eps) != 1:
                raise AssertionError(f"{self.name(name)} is on {sorted(eps)}: name the network")
            return next(iter(eps.values()))
        return eps[self.network_name(network)]

    def ip(self, name: str, network: str | None = None) -> str:
        return self._endpoint(name, network)["IPAddress"]

    def ip6(self, name: str, network: str | None = None) -> str:
        return self._endpoint(name, network)["GlobalIPv6Address"]

    def hosts_path(self, name: str) -> Path:
        return Path(self.engine.containers_root) / self.id(name) / "hosts"

    def hosts_bytes(self, name: str) -> bytes:
        return self.docker("exec", self.name(name), "cat", "/etc/hosts").stdout

    def hosts(self, name: str) -> str:
        """/etc/hosts as the container sees it (docker exec ... cat /etc/hosts)."""
        return self.hosts_bytes(name).decode("utf-8", errors="replace")

    def exec(self, name: str, *cmd: str, input: bytes | None = None) -> bytes:
        """`docker exec` (with -i and the bytes on stdin when input is given)."""
        flags = ["-i"] if input is not None else []
        return self.docker("exec", *flags, self.name(name), *cmd, input=input).stdout

    def stop(self, name: str) -> None:
        self.docker("stop", "-t", "0", self.name(name))

    def start(self, name: str) -> None:
        self.docker("start", self.name(name))

    def restart(self, name: str) -> None:
        self.docker("restart", "-t", "0", self.name(name))

    def pause(self, name: str) -> None:
        self.docker("pause", self.name(name))

    def unpause(self, name: str) -> None:
        self.docker("unpause", self.name(name))

    def rm(self, name: str) -> None:
        self.docker("rm", "-f", "-v", self.name(name))

    def rename(self, name: str, new: str) -> str:
        self.docker("rename", self.name(name), self.name(new))
        return self.name(new)

    def connect(self, name: str, network: str, *args: str) -> None:
        self.docker("network", "connect", *args, self.network_name(network), self.name(name))

    def disconnect(self, name: str, network: str) -> None:
        self.docker("network", "disconnect", self.network_name(network), self.name(name))

    def cleanup(self) -> None:
        ids: set[str] = set()
        for flt in (f"label={OWNER_LABEL}={self.prefix}", f"name={self.prefix}"):
            proc = self.docker("ps", "-aq", "--no-trunc", "--filter", flt, check=False)
            ids.update(proc.stdout.decode().split())
        for cid in sorted(ids):
            # A paused container must be unpaused before rm -f on some engines.
            self.docker("unpause", cid, check=False)
            self.docker("rm", "-f", "-v", cid, check=False)


@pytest.fixture
def containers(engine: Any, prefix: str, networks: Networks) -> Iterator[Containers]:
    # `networks` is set up first so it is torn down after the containers that use it.
    engine.ensure_running()  # cheap when it answers; heals after an engine-restart test
    c = Containers(engine, prefix, privengine.DEFAULT_IMAGE, networks)
    yield c
    c.cleanup()


# -- the daemon ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple) and all(isinstance(v, str | Path) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML rendering for {value!r}")


def render_config(sections: Mapping[str, Mapping[str, Any]]) -> str:
    out = []
    for section, keys in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in keys.items())
        out.append("")
    return "\n".join(out)


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    config: Path
    stderr_path: Path
    stdout_path: Path
    _logs: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON line the daemon wrote to stderr so far (other lines skipped)."""
        with self.stderr_path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                self._logs.append(entry)
        return list(self._logs)

    def wait_log(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10,
        what: str = "a matching log entry",
    ) -> dict[str, Any]:  # fmt: skip
        def found() -> dict[str, Any] | None:
            if not self.alive():
                pytest.fail(f"daemon exited with {self.proc.returncode} while waiting for "
                            f"{what}:\n{_shorten(self.stderr_text())}", pytrace=False)  # fmt: skip
            return next((e for e in self.logs() if predicate(e)), None)

        return wait_until(found, timeout=timeout, interval=0.05, what=what)

    def stop(self, timeout: float = 5) -> int:
        """SIGTERM; the daemon must exit within `timeout` seconds."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"daemon did not exit within {timeout}s of SIGTERM", pytrace=False)

    def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return self.proc.wait()


class DaemonFactory:
    def __init__(self, engine: Any, tmp: Path) -> None:
        self.engine = engine
        self.tmp = tmp
        self.started: list[DaemonProcess] = []
        self._n = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("HOSTSYNCD_CONFIG", None)
        env.pop("JOURNAL_STREAM", None)
        env.pop("INVOCATION_ID", None)
        # A safety net only (the config names the engine): should the daemon ever fall back
        # to docker's environment defaults, it still reaches the private engine and never the
        # machine's own.
        env["DOCKER_HOST"] = self.engine.host
        return env

    def sections(
        self,
        *,
        url: str | None = None,
        containers_root: str | Path | None = None,
        label: str = LINKS_LABEL,
        on_target_stop: str = "remove",
        health: str = "ignore",
        resync_interval: float = 60,
        level: str = "debug",
        output: str = "json",
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {
            "daemon": {"state_file": str(self.tmp / "state.json")},
            "docker": {
                "url": url or self.engine.host,
                "containers_root": str(containers_root or self.engine.containers_root),
            },
            "links": {"label": label, "on_target_stop": on_target_stop, "health": health},
            "sync": {"resync_interval": resync_interval},
            "log": {"level": level, "output": output},
        }
        for section, keys in (extra or {}).items():
            sections.setdefault(section, {}).update(keys)
        return sections

    def write_config(self, text: str | None = None, **kwargs: Any) -> Path:
        """A config file from kwargs (see sections()), or the given raw text."""
        self._n += 1
        path = self.tmp / f"config-{self._n}.toml"
        path.write_text(text if text is not None else render_config(self.sections(**kwargs)))
        return path

    def start(self, env: Mapping[str, str] | None = None, config: Path | None = None,
              **kwargs: Any) -> DaemonProcess:
        """Start `python -m hostsyncd run --config <file written from kwargs>` (or the
        given config file), with extra environment variables if given."""
        config = config or self.write_config(**kwargs)
        n = self._n
        stderr_path, stdout_path = self.tmp / f"daemon-{n}.stderr", self.tmp / f"daemon-{n}.stdout"
        with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hostsyncd", "run", "--config", str(config)],
                cwd=REPO, env={**self.env(), **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err,
            )  # fmt: skip
        daemon = DaemonProcess(proc, config, stderr_path, stdout_path)
        self.started.append(daemon)
        return daemon

    __call__ = start

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`python -m hostsyncd ARGS...`, output captured as text."""
        return subprocess.run(
            [sys.executable, "-m", "hostsyncd", *args], cwd=REPO, env=self.env(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def sync(self, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`hostsyncd sync --config <file written from kwargs>`: one reconcile, then exit."""
        return self.cli("sync", "--config", str(self.write_config(**kwargs)))

    def cleanup(self, dump: bool) -> None:
        for daemon in self.started:
            if daemon.alive():
                daemon.proc.send_signal(signal.SIGTERM)
                try:
                    daemon.proc.wait(5)
                except subprocess.TimeoutExpired:
                    daemon.proc.kill()
                    daemon.proc.wait()
            if dump:
                code = daemon.proc.returncode
                print(f"--- daemon pid {daemon.pid} (exit {code}) stderr tail ---")
                lines = daemon.stderr_text().splitlines()[-60:]
                print("\n".join(line[:600] for line in lines))
                out = daemon.stdout_path.read_bytes().decode(errors="replace").strip()
                if out:
                    print(f"--- stdout ---\n{_shorten(out)}")


    def complaints(self) -> list[str]:
        """What the test's daemons did that no test wants: an unexpected error (a bug the
        loop caught and carried on from), a traceback, or an exit other than a clean one
        (0), a SIGKILL the test sent, or a SIGTERM that came before the handlers were in."""
        found = []
        for d in self.started:
            code = d.proc.returncode
            if code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                found.append(f"daemon pid {d.pid} exited with {code}")
            for entry in d.logs():
                if str(entry.get("event", "")).startswith("unexpected error"):
                    found.append(f"daemon pid {d.pid} logged: {_shorten(entry, 600)}")
            text = d.stderr_text()
            if "Traceback (most recent call last)" in text:
                at = text.index("Traceback (most recent call last)")
                found.append(f"daemon pid {d.pid} printed a traceback:\n"
                             f"{_shorten(text[at:], 1500)}")
        return found


@pytest.fixture
def daemon(engine: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(engine, tmp_path)
    yield factory
    finish_daemons(factory, request)


def finish_daemons(factory: DaemonFactory, request: pytest.FixtureRequest) -> None:
    """Stop the test's daemons (their logs shown if it failed). Shared by every test that
    runs a daemon: one that hit a bug fails its test, even when a later pass converged and
    the test's own checks passed."""
    with contextlib.suppress(Exception):
        factory.cleanup(dump=_test_failed(request))
    complaints = factory.complaints()
    if complaints and not _test_failed(request):
        pytest.fail("\n".join(complaints), pytrace=False)
