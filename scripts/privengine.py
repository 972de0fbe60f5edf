#!/usr/bin/env python3
"""A private Docker engine for hostsyncd's integration tests (stdlib only).

The engine runs beside the machine's own engine (if any) and never touches it:

    dockerd -H unix://<root>/docker.sock --data-root <root>/data --exec-root <exec-root>
            --pidfile <root>/docker.pid --bridge <bridge> --iptables=false --ip6tables=false
            --ip-forward=false --containerd-namespace hsdtest
            --containerd-plugins-namespace hsdtest-plugins --log-level warn

Its log goes to ``<root>/dockerd.log``. dockerd is started in a session of its own, so it
outlives the Python process that started it and one engine can serve many test runs;
``ensure_running`` reuses an engine that answers on the socket and otherwise cleans up
what an earlier engine left behind (stale pid file and processes, socket, mounts) before
starting a fresh one.

Beyond the basic recipe:
- ``--ip-forward=false`` keeps dockerd from switching on the host's IP forwarding (a
  host-wide setting); containers only talk to each other and the host on one bridge.
- The containerd namespaces keep this engine's containers apart should dockerd ever pick
  up a system containerd instead of starting its own under the exec root.
- Exec root: dockerd puts unix sockets under it, the longest being
  ``<exec-root>/libnetwork/<64 hex>.sock``, and a socket path must fit in 108 bytes. The
  exec root is ``<root>/exec`` when that path has at most 18 characters (as for the
  default ``/tmp/hsdtest``); for a longer root it is ``/tmp/hsdx-<8 hex of sha256(root)>``
  instead. ``<root>/docker.sock`` itself must stay under 104 characters.

Engine versions: ``engine="20.10"`` (the default) runs the machine's own ``dockerd``
(Debian 12's docker.io). ``"26"`` and ``"28"`` run the binaries scripts/fetch-engines.sh
unpacked from Debian 13 and unstable into ``$HSD_ENGINES_CACHE`` (default
/var/cache/hostsyncd-engines): their ``bin/`` (dockerd, docker-proxy, docker-init,
containerd, containerd-shim-runc-v2, nothing else, so runc stays Debian 12's) goes first on
dockerd's PATH, which is how dockerd finds its containerd and containerd its shim. Any
number of engines, of any versions, run at once as long as each has its own root, bridge
and CIDR. An engine found answering at a root that was started with another version is
stopped and started again with the one asked for.

CLI::

    python3 scripts/privengine.py start  --root DIR [--bridge B --cidr C] [--engine V]
                                         [--image TAG]
    python3 scripts/privengine.py stop   --root DIR
    python3 scripts/privengine.py status --root DIR

`start` prints `DOCKER_HOST=...` and `CONTAINERS_ROOT=...` lines (for `eval`). Without
--bridge/--cidr the CLI uses what the engine at that root was last started with (kept in
<root>/engine.json), else hsdtest0 and 10.231.0.1/24; likewise --engine (else 20.10).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from proctools import alive, locked, ping_socket, read_cmdline, read_pid, wait_gone

DEFAULT_ROOT = Path("/tmp/hsdtest")
DEFAULT_BRIDGE = "hsdtest0"
DEFAULT_CIDR = "10.231.0.1/24"
DEFAULT_IMAGE = "hsdtest/busybox:1"
BUSYBOX = Path("/bin/busybox")
NAMESPACE = "hsdtest"
# The engines the test matrix knows: "20.10" is the machine's own (Debian 12), the others
# are fetched by scripts/fetch-engines.sh.
SYSTEM_ENGINE = "20.10"
ENGINES = ("20.10", "26", "28")
ENGINES_CACHE = Path(os.environ.get("HSD_ENGINES_CACHE") or "/var/cache/hostsyncd-engines")

_MAX_EXEC_ROOT = 18  # len(exec_root) + len("/libnetwork/") + 64 + len(".sock") < 100
_MAX_SOCKET = 104


class EngineError(RuntimeError):
    """The private engine could not be started, stopped or used."""


class DockerError(subprocess.CalledProcessError):
    """A docker CLI call failed; unlike its base class, str() shows the CLI's stderr."""

    def __str__(self) -> str:
        err = self.stderr.decode(errors="replace") if isinstance(self.stderr, bytes) else ""
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {err.strip()}"


def _exec_root_for(root: Path) -> Path:
    candidate = root / "exec"
    if len(str(candidate)) <= _MAX_EXEC_ROOT:
        return candidate
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return Path(f"/tmp/hsdx-{digest}")


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after timeout; returns once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10):
        raise EngineError(f"process {pid} survived SIGKILL")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise EngineError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def engine_bin(version: str) -> Path | None:
    """The directory to put first on dockerd's PATH for this engine version (None: the
    machine's own dockerd)."""
    if version == SYSTEM_ENGINE:
        return None
    if version not in ENGINES:
        raise EngineError(f"unknown engine version {version!r} (known: {', '.join(ENGINES)})")
    bin_dir = ENGINES_CACHE / version / "bin"
    if not (bin_dir / "dockerd").exists() or not (bin_dir / "containerd").exists():
        raise EngineError(f"Docker {version} is not in {ENGINES_CACHE / version}: "
                          f"run scripts/fetch-engines.sh {version} (or scripts/ensure-deps.sh)")
    return bin_dir


class PrivateEngine:
    def __init__(self, root: Path, bridge: str = DEFAULT_BRIDGE, cidr: str = DEFAULT_CIDR,
                 engine: str = SYSTEM_ENGINE) -> None:  # fmt: skip
        self.root = Path(root).absolute()
        self.bridge = bridge
        self.cidr = cidr
        self.version = engine
        self.socket_path = self.root / "docker.sock"
        if len(str(self.socket_path)) >= _MAX_SOCKET:
            raise EngineError(f"socket path too long for a unix socket: {self.socket_path}")
        self.host = f"unix://{self.socket_path}"
        self.data_root = self.root / "data"
        self.exec_root = _exec_root_for(self.root)
        self.containers_root = self.data_root / "containers"
        self.pidfile = self.root / "docker.pid"
        self.logfile = self.root / "dockerd.log"
        self._lockfile = self.root / "engine.lock"
        # What the last start used, so the CLI can stop/restart without repeating it.
        self.settings_file = self.root / "engine.json"

    @staticmethod
    def saved_settings(root: Path) -> dict[str, str]:
        """The bridge and cidr the engine at root was last started with ({} if never)."""
        try:
            data = json.loads((Path(root).absolute() / "engine.json").read_text())
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        )

    # -- queries ----------------------------------------------------------------------

    def ping(self, timeout: float = 2.0) -> bool:
        """True when dockerd answers GET /_ping on the socket."""
        return ping_socket(self.socket_path, timeout)

    def pid(self) -> int | None:
        """The pid of this root's dockerd if the pid file names a live dockerd."""
        pid = read_pid(self.pidfile)
        return pid if pid is not None and self._is_our_dockerd(pid) else None

    def _is_our_dockerd(self, pid: int) -> bool:
        if not alive(pid):
            return False
        cmd = read_cmdline(pid)
        return (
            bool(cmd) and Path(cmd[0]).name == "dockerd" and str(self.socket_path) in " ".join(cmd)
        )

    def _leftover_processes(self) -> list[tuple[int, str]]:
        """dockerd and containerd processes of this root (not shims: dockerd reaps those)."""
        found = []
        exec_root = str(self.exec_root)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            cmd = read_cmdline(pid)
            if not cmd:
                continue
            name = Path(cmd[0]).name
            joined = " ".join(cmd)
            ours = (name == "dockerd" and str(self.socket_path) in joined) or (
                name == "containerd" and f"{exec_root}/containerd" in joined
            )
            if ours and alive(pid):
                found.append((pid, name))
        # dockerd first: it stops its own containerd.
        return sorted(found, key=lambda p: p[1] != "dockerd")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS"):
            env.pop(key, None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CLI_HINTS"] = "false"
        return env

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["docker", *args]
        proc = subprocess.run(
            cmd,
            env=self.env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DockerError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.logfile.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                data = f.read()
        except OSError as exc:
            return f"(no dockerd log: {exc})"
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    # -- lifecycle --------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._lockfile)

    def _runs_other_version(self) -> bool:
        return self.saved_settings(self.root).get("engine", SYSTEM_ENGINE) != self.version

    def ensure_running(self, timeout: float = 90) -> None:
        """Reuse an engine that answers; otherwise clean up and start dockerd fresh."""
        if self.ping() and not self._runs_other_version():
            return
        with self._locked():
            if self.ping() and not self._runs_other_version():
                return
            pid = self.pid()
            if pid is not None and not self._runs_other_version():
                # Maybe still starting (another run launched it a moment ago).
                deadline = time.monotonic() + min(20.0, timeout / 2)
                while time.monotonic() < deadline and alive(pid):
                    if self.ping():
                        return
                    time.sleep(0.1)
            self._cleanup()
            self._ensure_bridge()
            self._launch(timeout)

    def start(self) -> None:
        """Start the engine again after stop(), with the same directories."""
        self.ensure_running()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM dockerd (from its pid file) and wait until it is gone."""
        with self._locked():
            pid = self.pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                if not wait_gone(pid, timeout):
                    raise EngineError(
                        f"dockerd {pid} still running {timeout}s after SIGTERM\n" + self.log_tail()
                    )
            # dockerd stops its containerd on the way out; wait for that too.
            for other, _name in self._leftover_processes():
                wait_gone(other, 10)

    def _cleanup(self) -> None:
        for pid, _name in self._leftover_processes():
            _terminate(pid, 15)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        # dockerd adopts the containerd named in this pid file when that pid is "alive",
        # and a zombie counts as alive for it (PID 1 here may reap slowly): it then waits
        # for a socket that never comes and fails. Every containerd of ours is gone by
        # now, so its pid file and sockets are stale.
        state = self.exec_root / "containerd"
        for name in ("containerd.pid", "containerd.sock", "containerd.sock.ttrpc",
                     "containerd-debug.sock"):  # fmt: skip
            with contextlib.suppress(FileNotFoundError):
                (state / name).unlink()
        self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        prefixes = (str(self.root) + "/", str(self.exec_root) + "/")
        mounts = []
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            fields = line.split()
            if len(fields) < 5:
                continue
            # mountinfo escapes spaces and the like as octal (\040).
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(prefixes) or point in (str(self.root), str(self.exec_root)):
                mounts.append(point)
        for point in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _ensure_bridge(self) -> None:
        if _ip("link", "show", "dev", self.bridge, check=False).returncode != 0:
            _ip("link", "add", self.bridge, "type", "bridge")
        addrs = _ip("-o", "-4", "addr", "show", "dev", self.bridge).stdout
        if f" {self.cidr} " not in f" {addrs} ".replace("\n", " "):
            _ip("addr", "add", self.cidr, "dev", self.bridge, check=False)
        _ip("link", "set", self.bridge, "up")

    def _path(self) -> str:
        """dockerd's PATH: the engine's own bin directory first, if it has one."""
        path = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
        for needed in ("/usr/sbin", "/sbin"):  # runc, ip, iptables
            if needed not in path.split(":"):
                path += ":" + needed
        bin_dir = engine_bin(self.version)
        return path if bin_dir is None else f"{bin_dir}:{path}"

    def _command(self) -> list[str]:
        dockerd = shutil.which("dockerd", path=self._path())
        if dockerd is None:
            raise EngineError("dockerd not found: run scripts/ensure-deps.sh")
        return [
            dockerd,
            "-H", self.host,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--bridge", self.bridge,
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--containerd-namespace", NAMESPACE,
            "--containerd-plugins-namespace", f"{NAMESPACE}-plugins",
            "--log-level", "warn",
        ]  # fmt: skip

    def _launch(self, timeout: float) -> None:
        for path in (self.root, self.data_root, self.exec_root):
            path.mkdir(parents=True, exist_ok=True)
        cmd = self._command()
        settings = {"bridge": self.bridge, "cidr": self.cidr, "exec_root": str(self.exec_root),
                    "engine": self.version}
        self.settings_file.write_text(json.dumps(settings) + "\n")
        with self.logfile.open("ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                env={**os.environ, "PATH": self._path()},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineError(
                    f"dockerd exited with {proc.returncode} while starting; "
                    f"log {self.logfile}:\n{self.log_tail()}"
                )
            if self.ping():
                return
            time.sleep(0.1)
        raise EngineError(
            f"dockerd did not answer on {self.socket_path} within {timeout}s; "
            f"log {self.logfile}:\n{self.log_tail()}"
        )

    # -- image ------------------------------------------------------------------------

    def ensure_image(self, tag: str = DEFAULT_IMAGE) -> str:
        """Import a busybox-static rootfs as `tag` unless the engine has it already."""
        if self.docker("image", "inspect", tag, check=False).returncode == 0:
            return tag
        self.docker("import", *_IMPORT_CHANGES, "-", tag, input=_busybox_rootfs_tar(),
                    timeout=120)  # fmt: skip
        return tag

    def status(self) -> dict[str, object]:
        return {
            "running": self.ping(),
            "pid": self.pid(),
            "host": self.host,
            "containers_root": str(self.containers_root),
            "exec_root": str(self.exec_root),
            "bridge": self.bridge,
            "engine": self.version,
            "log": str(self.logfile),
        }


_IMPORT_CHANGES = ("--change", 'CMD ["sleep", "3600"]', "--change", "ENV PATH=/bin")


def _busybox_rootfs_tar() -> bytes:
    if not BUSYBOX.exists():
        raise EngineError(f"{BUSYBOX} missing: install busybox-static (scripts/ensure-deps.sh)")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for needed in ("sh", "cat", "sleep", "cp", "ip"):
        if needed not in applets:
            raise EngineError(f"{BUSYBOX} has no {needed} applet; is it busybox-static?")
    buf = io.BytesIO()
    now = int(time.time())

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, now
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run"):
            add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        add_file(tar, "bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in applets:
            if applet == "busybox" or "/" in applet:
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "busybox", 0o777, now
            tar.addfile(info)
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file(tar, "etc/group", b"root:x:0:\n")
        for name in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
            add_file(tar, name, b"")
    return buf.getvalue()


# -- CLI ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "ensure the engine runs and has the test image; print its settings"),
        ("stop", "stop the engine"),
        ("status", "show whether the engine runs (exit 0 when it does, 3 when not)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
        p.add_argument(
            "--bridge", help=f"default: the last one used for this root, else {DEFAULT_BRIDGE}"
        )
        p.add_argument(
            "--cidr", help=f"default: the last one used for this root, else {DEFAULT_CIDR}"
        )
        if name == "start":
            p.add_argument("--image", default=DEFAULT_IMAGE)
            p.add_argument("--engine", choices=ENGINES,
                           help=f"default: the last one used for this root, else {SYSTEM_ENGINE}")
    args = parser.parse_args(argv)
    try:
        saved = PrivateEngine.saved_settings(args.root)
        engine = PrivateEngine(
            args.root,
            args.bridge or saved.get("bridge", DEFAULT_BRIDGE),
            args.cidr or saved.get("cidr", DEFAULT_CIDR),
            getattr(args, "engine", None) or saved.get("engine", SYSTEM_ENGINE),
        )
        if args.command == "start":
            engine.ensure_running()
            engine.ensure_image(args.image)
            print(f"DOCKER_HOST={engine.host}")
            print(f"CONTAINERS_ROOT={engine.containers_root}")
            return 0
        if args.command == "stop":
            engine.stop()
            return 0
        state = engine.status()
        print(json.dumps(state, indent=2))
        return 0 if state["running"] else 3
    except (EngineError, subprocess.SubprocessError, OSError) as exc:
        print(f"privengine: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
