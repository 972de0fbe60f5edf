#!/usr/bin/env python3
"""A private rootful Podman service for hostsyncd's tests (stdlib only), beside any other.

    podman --root <root>/storage --runroot <root>/run --tmpdir <root>/tmp
           system service --time=0 unix://<root>/podman.sock

Everything it touches is its own, so it runs beside the machine's Podman (if any), other
sessions' private ones and the private Docker engines:
- `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` name files under the root: the storage
  (driver vfs: no overlay mounts to leave behind), the events log (a file under the root,
  not journald, where every Podman on the machine would show up), the CNI config directory
  and libpod's tmp dir. The rlimits are set low because this sandbox refuses Podman's
  defaults (`error setting rlimit type 6/7: operation not permitted`).
- One CNI network, written as a conflist by hand rather than `podman network create`,
  which on 4.3 cannot name the bridge (it picks the next free `cni-podman<N>`, which
  another Podman may pick too): bridge $HSD_PODMAN_BRIDGE (default hsdpod0), subnet
  $HSD_PODMAN_CIDR (default 10.219.0.0/24), no DNS (there is no dnsname plugin here, and
  Podman's default network has none either: the gap hostsyncd fills), host-local IPAM
  state under the root (its default, /var/lib/cni/networks/<name>, is shared by name).
- The image is the same busybox-static rootfs as the Docker test image (privengine.py),
  imported as hsdtest/busybox:1 (Podman calls it localhost/hsdtest/busybox:1).

The service runs in a session of its own and outlives the Python process that started it;
`ensure_running` reuses one that answers on the socket, and otherwise ends the one the pid
file names (if it is this root's) and starts a fresh one. Containers survive a service
restart: with Podman they are conmon's children, not the service's.

CLI::

    python3 scripts/privpodman.py start|stop|status [--root DIR]

`start` prints `DOCKER_HOST=...` (for `eval`). The root defaults to $HSD_PODMAN_ROOT, else
/tmp/hsdpodman.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from privengine import _IMPORT_CHANGES, DEFAULT_IMAGE, EngineError, _busybox_rootfs_tar
from proctools import alive, locked, ping_socket, read_cmdline, read_pid, wait_gone

DEFAULT_ROOT = Path(os.environ.get("HSD_PODMAN_ROOT") or "/tmp/hsdpodman")
DEFAULT_BRIDGE = os.environ.get("HSD_PODMAN_BRIDGE") or "hsdpod0"
DEFAULT_CIDR = os.environ.get("HSD_PODMAN_CIDR") or "10.219.0.0/24"
DEFAULT_NETWORK = os.environ.get("HSD_PODMAN_NETWORK") or "hsdpodman0"
# The rlimits this sandbox lets a container have (Podman's defaults are refused here).
ULIMITS = ("nofile=1024:1024", "nproc=4096:4096")


class PrivatePodman:
    def __init__(self, root: Path = DEFAULT_ROOT, bridge: str = DEFAULT_BRIDGE,
                 cidr: str = DEFAULT_CIDR, network: str = DEFAULT_NETWORK) -> None:
        self.root = Path(root).absolute()
        self.bridge = bridge
        self.subnet = ipaddress.ip_network(cidr, strict=False)
        self.network = network
        self.socket_path = self.root / "podman.sock"
        self.host = f"unix://{self.socket_path}"
        self.storage = self.root / "storage"
        self.runroot = self.root / "run"
        self.tmpdir = self.root / "tmp"
        self.cni_dir = self.root / "cni"
        self.pidfile = self.root / "podman.pid"
        self.logfile = self.root / "service.log"
        # Where Podman (vfs) keeps each container's hosts file: <runroot>/vfs-containers/
        # <id>/userdata/hosts. hostsyncd is told `hosts_roots = [runroot]`.
        self.containers_root = self.runroot / "vfs-containers"
        self.version = "podman"

    # -- configuration ----------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.root / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf")}

    def _write_config(self) -> None:
        for path in (self.root, self.storage, self.runroot, self.tmpdir, self.cni_dir):
            path.mkdir(parents=True, exist_ok=True)
        ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
        (self.root / "containers.conf").write_text(
            f"[containers]\ndefault_ulimits = [{ulimits}]\n"
            f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{self.cni_dir}"\n'
            f'[engine]\ntmp_dir = "{self.tmpdir}"\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.root / "events.log"}"\n'
            f'cgroup_manager = "cgroupfs"\nruntime = "runc"\n')
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.runroot}"\n'
            f'graphroot = "{self.storage}"\n')
        hosts = list(self.subnet.hosts())
        conflist = {
            "cniVersion": "0.4.0",
            "name": self.network,
            "plugins": [{
                "type": "bridge", "bridge": self.bridge, "isGateway": True,
                "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(self.root / "cni-ipam"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": str(self.subnet), "gateway": str(hosts[0])}]],
                },
            }],
        }
        (self.cni_dir / f"{self.network}.conflist").write_text(json.dumps(conflist, indent=1))

    # -- the CLI ------------------------------------------------------------------------

    def podman(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        cmd = ["podman", "--root", str(self.storage), "--runroot", str(self.runroot),
               "--tmpdir", str(self.tmpdir), *args]
        proc = subprocess.run(cmd, env=self.env(), input=input, capture_output=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise EngineError(f"{' '.join(cmd)} exited {proc.returncode}: "
                              f"{proc.stderr.decode(errors='replace').strip()}")
        return proc

    def out(self, *args: str) -> str:
        return self.podman(*args).stdout.decode().strip()

    # -- the service --------------------------------------------------------------------

    def ping(self, timeout: float = 2.0) -> bool:
        return ping_socket(self.socket_path, timeout)

    def pid(self) -> int | None:
        """The pid file's service, if it is alive and serves this root's socket."""
        pid = read_pid(self.pidfile)
        if pid is None:
            return None
        cmdline = read_cmdline(pid)
        if alive(pid) and "service" in cmdline and self.host in cmdline:
            return pid
        return None

    def ensure_running(self, timeout: float = 60) -> None:
        with locked(self.root.parent / f".{self.root.name}.lock"):
            self._write_config()
            if self.ping():
                return
            self._stop()
            self._launch(timeout)

    def stop(self) -> None:
        with locked(self.root.parent / f".{self.root.name}.lock"):
            self._stop()

    def _stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 10)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _launch(self, timeout: float) -> None:
        cmd = ["podman", "--root", str(self.storage), "--runroot", str(self.runroot),
               "--tmpdir", str(self.tmpdir), "system", "service", "--time=0", self.host]
        with self.logfile.open("ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True, close_fds=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        delay = 0.02
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineError(f"podman system service exited with {proc.returncode}; "
                                  f"log {self.logfile}:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise EngineError(f"podman did not answer on {self.socket_path} within {timeout}s; "
                          f"log {self.logfile}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def ensure_image(self, tag: str = DEFAULT_IMAGE) -> str:
        if self.podman("image", "exists", tag, check=False).returncode != 0:
            self.podman("import", *_IMPORT_CHANGES, "-", tag, input=_busybox_rootfs_tar(),
                        timeout=120)
        return tag

    def status(self) -> dict[str, object]:
        return {"running": self.ping(), "pid": self.pid(), "host": self.host,
                "runroot": str(self.runroot), "bridge": self.bridge,
                "subnet": str(self.subnet), "network": self.network, "log": str(self.logfile)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    podman = PrivatePodman(args.root)
    try:
        if args.action == "start":
            podman.ensure_running()
            podman.ensure_image()
            print(f"DOCKER_HOST={podman.host}")
            print(f"HOSTS_ROOT={podman.runroot}")
        elif args.action == "stop":
            podman.stop()
        else:
            print(json.dumps(podman.status(), indent=2))
    except EngineError as exc:
        print(f"privpodman: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
