"""The package under a real systemd.

No systemd runs as PID 1 on this machine, so this boots one, for each Debian release a
package is built for: a minimal root of that release (packaging/debroot.sh: systemd,
python3, procps, apt, nothing else), in a container (systemd-nspawn on a tmpfs overlay of
the cached root, inside a private mount namespace, with a private network: nothing it
writes reaches the disk, and everything it mounted goes away with it). The test engine's
socket and containers directory are bound in where Docker keeps them, so the daemon runs
with the shipped config against a real engine. docker.service is a stand-in there, to
exercise the unit's ordering.

In that machine the release's .deb is installed with apt, offline, so its Depends must be
met by the release itself, and its maintainer scripts run where systemd runs, and then
everything that static checks can't show is checked on the live service: Type=notify
start-up, the sandbox as applied, links being written from inside it, native journald
entries, reload, the watchdog, the engine's unit stopping, stop and purge.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hsd_pkgtest import REPO, Built, run, tool

LINKS_LABEL = "hostsyncd.links"
APT = "apt-get -o DPkg::Lock::Timeout=60 -y -q"
ENV = ("env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=",
       "SYSTEMD_COLORS=0", "DEBIAN_FRONTEND=noninteractive")

BOOT = r"""
set -e
ovl={ovl}
mount -t tmpfs -o size=2g tmpfs "$ovl"
mkdir "$ovl/upper" "$ovl/work" "$ovl/root"
mount -t overlay overlay -o "lowerdir={lower},upperdir=$ovl/upper,workdir=$ovl/work" "$ovl/root"
root=$ovl/root
printf '[Unit]\nDescription=stand-in engine\n[Service]\nExecStart=/bin/sleep infinity\n' \
    >"$root/etc/systemd/system/docker.service"
# Docker-built images forbid starting services from maintainer scripts; a host doesn't.
rm -f "$root/usr/sbin/policy-rc.d"
cp {deb} "$root/root/hostsyncd.deb"
exec systemd-nspawn --quiet -D "$root" --boot --register=no --keep-unit --link-journal=no \
    --private-network -M {name} --console=passive \
    --bind={socket}:/run/docker.sock --bind={containers}:/var/lib/docker/containers \
    -- systemd.mask=docker.socket systemd.mask=containerd.service
"""


class Machine:
    def __init__(self, built: Built, engine: Any, workdir: Path, lower: Path) -> None:
        self.built = built
        self.name = f"hsdpkg{os.getpid()}"
        self.log = workdir / "nspawn.log"
        ovl = workdir / "ovl"
        ovl.mkdir()
        script = BOOT.format(ovl=shlex.quote(str(ovl)), deb=shlex.quote(str(built.deb)),
                             lower=shlex.quote(str(lower)),
                             name=self.name, socket=shlex.quote(str(engine.socket_path)),
                             containers=shlex.quote(str(engine.containers_root)))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.leader = self._find_leader()

    def _find_leader(self, timeout: float = 30) -> int:
        """The container's PID 1 (as the host sees it): nspawn's child running systemd."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"systemd-nspawn exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.1)
        pytest.fail(f"no systemd in the container after {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def run(self, *cmd: str, check: bool = True, timeout: float = 120) -> Any:
        return run(tool("nsenter"), "-t", str(self.leader), "-a", *ENV, *cmd, check=check,
                   timeout=timeout)

    def out(self, *cmd: str) -> str:
        return self.run(*cmd).stdout.strip()

    def sh(self, script: str, check: bool = True) -> Any:
        return self.run("sh", "-c", script, check=check)

    def props(self, unit: str, *names: str) -> dict[str, str]:
        args = [f"--property={name}" for name in names]
        lines = self.out("systemctl", "show", *args, unit).splitlines()
        return dict(line.split("=", 1) for line in lines)

    def boot(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Fails to connect until the manager has its socket; then waits for the boot.
            state = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=timeout)
            # "degraded" only says some unit of this machine's own OS failed in a
            # container; what matters here is that the manager is up.
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"the container did not boot: {state.stdout}{state.stderr}\n"
                            f"{self.log_tail()}")
            time.sleep(0.2)

    def poweroff(self) -> None:
        with contextlib.suppress(Exception):
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=30)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)  # takes the whole PID namespace along
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        with contextlib.suppress(OSError):
            Path(f"/run/systemd/nspawn/propagate/{self.name}").rmdir()


@pytest.fixture(scope="module")
def machine(built: Built, engine: Any, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Machine]:
    for name in ("systemd-nspawn", "unshare", "nsenter", "mmdebstrap"):
        tool(name)
    # Cached outside the work tree; made (about 30 s) on the first run only.
    lower = Path(run(REPO / "packaging/debroot.sh", built.release, "run",
                     timeout=900).stdout.strip())
    box = Machine(built, engine, tmp_path_factory.mktemp(f"nspawn-{built.release}"), lower)
    try:
        box.boot()
        # The maintainer scripts enable and start the service because systemd runs here.
        box.sh(f"{APT} install /root/hostsyncd.deb")
        yield box
    finally:
        box.poweroff()


def service(box: Machine) -> dict[str, str]:
    return box.props("hostsyncd.service", "ActiveState", "SubState", "MainPID", "NRestarts",
                     "StatusText", "Result", "ExecMainStatus", "WatchdogUSec")


def test_installed_enabled_and_started(machine: Machine):
    assert machine.out("systemctl", "is-enabled", "hostsyncd.service") == "enabled"
    state = service(machine)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    # Type=notify: "active" means the daemon sent READY=1. STATUS= got through as well.
    assert state["StatusText"], state
    assert state["WatchdogUSec"] == "30s"


def test_the_release_s_python_runs_it(machine: Machine):
    built = machine.built
    assert machine.out("dpkg-query", "-W", "-f=${Version}", "hostsyncd") == built.deb_version
    assert machine.out("hostsyncd", "--version") == f"hostsyncd {built.version}"
    version = machine.out("/opt/hostsyncd/bin/python", "-c",
                          "import sys; print('%d.%d' % sys.version_info[:2])")
    assert version == built.python == machine.out(
        "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    unit = f"{built.unit_dir}/hostsyncd.service"
    assert machine.props("hostsyncd.service", "FragmentPath")["FragmentPath"] == unit


def test_sandbox_as_applied(machine: Machine):
    pid = service(machine)["MainPID"]
    status = machine.out("cat", f"/proc/{pid}/status")
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", status, re.MULTILINE))
    assert fields["Uid"].split() == ["0"] * 4
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0" * 16
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"
    # PrivateUsers=yes: a user namespace that maps root (and only root) to itself.
    assert machine.out("cat", f"/proc/{pid}/uid_map").split() == ["0", "0", "1"]
    # What is writable in the service's mount namespace (probed as root with every
    # capability, so only read-only mounts say no).
    candidates = ["/", "/etc", "/etc/hostsyncd", "/opt/hostsyncd", "/usr", "/var", "/var/lib",
                  "/var/lib/docker", "/var/lib/docker/containers", "/var/log", "/var/tmp",
                  "/tmp", "/run", "/run/systemd", "/run/lock", "/run/hostsyncd", "/dev/shm",
                  "/dev/mqueue", "/root", "/home", "/srv"]
    probe = ("for d in " + " ".join(candidates) + "; do if touch $d/.hsdprobe 2>/dev/null; "
             "then rm -f $d/.hsdprobe; echo $d; fi; done")
    writable = machine.out("nsenter", "-t", pid, "-m", "sh", "-c", probe).split()
    # /tmp and /var/tmp are the service's own (PrivateTmp=yes).
    assert sorted(writable) == ["/run/hostsyncd", "/tmp", "/var/lib/docker/containers",
                                "/var/tmp"]


def test_security_score_of_the_loaded_unit(machine: Machine):
    out = machine.out("systemd-analyze", "security", "--no-pager", "hostsyncd.service")
    match = re.search(r"Overall exposure level for hostsyncd\.service: (\d+\.\d+)", out)
    assert match and float(match.group(1)) <= 2.0, out


def test_links_written_from_inside_the_sandbox(machine: Machine, containers: Any,
                                               wait_until: Any):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS_LABEL: f"{db}:db"})
    line = f"{containers.ip('db')}\tdb {db}"
    wait_until(lambda: line in containers.hosts("web"), what=f"{line!r} in {web}'s hosts")
    # Native journald entries, with the event's fields as journal fields.
    entries = [json.loads(raw) for raw in machine.out(
        "journalctl", "-u", "hostsyncd", "-o", "json", f"CONTAINER_NAME={web}").splitlines()]
    assert any(e.get("_TRANSPORT") == "journal" and "ADDED" in e for e in entries), entries
    # The state file in /run/hostsyncd, read back by `hostsyncd status`. It follows
    # changes at most once a second, so it may be a moment behind the file.
    wait_until(lambda: web in machine.out("hostsyncd", "status"), timeout=5,
               what=f"{web} in `hostsyncd status`")


def test_status_for_a_user_who_cannot_read_the_config(machine: Machine, wait_until: Any):
    # The config may hold etcd credentials: root's alone. The state file holds none.
    assert machine.out("stat", "-c", "%a %U", "/etc/hostsyncd/config.toml") == "600 root"
    assert machine.out("stat", "-c", "%a", "/run/hostsyncd", "/run/hostsyncd/state.json"
                       ).split() == ["755", "644"]
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    denied = machine.run(*nobody, "cat", "/etc/hostsyncd/config.toml", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    status = machine.run(*nobody, "hostsyncd", "status", check=False)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("hostsyncd pid "), status.stdout
    as_json = json.loads(machine.out(*nobody, "hostsyncd", "status", "--json"))
    assert as_json["pid"] == int(service(machine)["MainPID"])


def test_reload(machine: Machine):
    before = service(machine)
    reloaded = machine.out("journalctl", "-u", "hostsyncd", "-o", "cat").count("config reloaded")
    machine.run("systemctl", "reload", "hostsyncd.service")
    after = service(machine)
    assert after["MainPID"] == before["MainPID"] and after["ActiveState"] == "active"
    log = machine.out("journalctl", "-u", "hostsyncd", "-o", "cat")
    assert log.count("config reloaded") == reloaded + 1


def test_engine_unit_going_down_leaves_hostsyncd_running(machine: Machine):
    before = service(machine)
    assert machine.out("systemctl", "is-active", "docker.service") == "active"  # Wants=
    machine.run("systemctl", "restart", "docker.service")
    machine.run("systemctl", "stop", "docker.service")
    after = service(machine)
    assert after["ActiveState"] == "active"
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], before["NRestarts"])
    machine.run("systemctl", "start", "docker.service")


def test_watchdog(machine: Machine, wait_until: Any):
    # The daemon pings at half of WatchdogSec; a 4 s watchdog makes this quick.
    dropin = "/run/systemd/system/hostsyncd.service.d/test-watchdog.conf"
    machine.sh(f"mkdir -p {Path(dropin).parent} && printf '[Service]\\nWatchdogSec=4\\n' >{dropin}"
               " && systemctl daemon-reload && systemctl restart hostsyncd.service")
    try:
        first = service(machine)
        time.sleep(6)  # longer than the watchdog: the pings keep it alive
        alive = service(machine)
        assert (alive["MainPID"], alive["NRestarts"]) == (first["MainPID"], first["NRestarts"])
        machine.run("kill", "-STOP", first["MainPID"])  # hung
        wait_until(lambda: service(machine)["NRestarts"] != first["NRestarts"], timeout=30,
                   what="a restart after the watchdog fired")
        wait_until(lambda: service(machine)["ActiveState"] == "active", timeout=30,
                   what="hostsyncd active again")
        assert service(machine)["MainPID"] != first["MainPID"]
        assert "Watchdog timeout" in machine.out("journalctl", "-u", "hostsyncd", "-o", "cat")
    finally:
        machine.sh(f"rm -f {dropin} && systemctl daemon-reload"
                   " && systemctl restart hostsyncd.service")


def test_zz_stop_then_purge(machine: Machine):
    machine.run("systemctl", "stop", "hostsyncd.service")
    state = service(machine)
    assert (state["ActiveState"], state["Result"], state["ExecMainStatus"]) == (
        "inactive", "success", "0"), state
    assert machine.sh("test -e /run/hostsyncd", check=False).returncode != 0
    machine.run("systemctl", "start", "hostsyncd.service")
    machine.sh(f"{APT} purge hostsyncd")  # prerm stops it
    assert service(machine)["ActiveState"] == "inactive"
    assert machine.run("systemctl", "cat", "hostsyncd.service", check=False).returncode != 0
    left = machine.sh(
        "ls -d /opt/hostsyncd /etc/hostsyncd /usr/bin/hostsyncd /run/hostsyncd"
        " /lib/systemd/system/hostsyncd.service /etc/systemd/system/*/hostsyncd.service"
        " /var/lib/systemd/deb-systemd-helper-enabled/*hostsyncd*"
        " /var/lib/systemd/deb-systemd-helper-enabled/*/hostsyncd* 2>/dev/null",
        check=False,
    ).stdout.split()
    assert left == []
