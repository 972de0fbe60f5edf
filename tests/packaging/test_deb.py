"""`make deb`: the packages as built (each release's), and the one for this machine's
release installed with apt, used and purged. test_systemd_live.py does the same for every
release, under systemd in that release's root.

This installs the package on the machine running the tests (as root, like the rest of the
suite) and purges it again, so it refuses to run where hostsyncd is already installed
rather than take over someone's installation.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hsd_pkgtest import REPO, UNIT, Built, parse_unit, run, tool

PACKAGE = "hostsyncd"
VENV = Path("/opt/hostsyncd")
BIN = Path("/usr/bin/hostsyncd")
CONFIG = Path("/etc/hostsyncd/config.toml")
ENABLED_LINK = Path("/etc/systemd/system/multi-user.target.wants/hostsyncd.service")
APT = ("-o", "DPkg::Lock::Timeout=120", "-y", "-q")


def installed() -> bool:
    proc = run(tool("dpkg-query"), "-W", "-f=${Status}", PACKAGE, check=False)
    return proc.returncode == 0 and proc.stdout.endswith(" installed")


def purge() -> None:
    run(tool("apt-get"), *APT, "purge", PACKAGE, timeout=300)


@pytest.fixture(scope="module")
def install(host_built: Built) -> Iterator[Built]:
    built = host_built
    tool("apt-get")
    if installed():
        pytest.fail(f"{PACKAGE} is already installed here; this test installs and purges it. "
                    f"Run 'apt-get purge {PACKAGE}' first.")
    apt_get = tool("apt-get")
    proc = run(apt_get, *APT, "install", f"./{built.deb.relative_to(REPO)}", cwd=REPO,
               timeout=300, check=False)
    if proc.returncode != 0:  # a dependency to download, with stale package lists
        run(apt_get, "-q", "update", timeout=300)
        run(apt_get, *APT, "install", f"./{built.deb.relative_to(REPO)}", cwd=REPO,
            timeout=300)
    try:
        yield built
    finally:
        if installed():
            purge()


def test_sdist_and_wheel_built_alongside(built: Built):
    dist = REPO / "dist"
    assert (dist / f"{PACKAGE}-{built.version}-py3-none-any.whl").is_file()
    assert (dist / f"{PACKAGE}-{built.version}.tar.gz").is_file()


def test_control_fields(built: Built):
    fields = run(tool("dpkg-deb"), "--field", built.deb).stdout
    control = dict(re.findall(r"^([\w-]+): (.*)$", fields, re.MULTILINE))
    assert control["Package"] == PACKAGE
    assert control["Version"] == built.deb_version
    depends = [dep.strip() for dep in control["Depends"].split(",")]
    major, minor = built.python.split(".")
    assert f"python3 (>= {built.python})" in depends
    assert f"python3 (<< {major}.{int(minor) + 1})" in depends
    assert any(dep.startswith("libsystemd0") for dep in depends), depends
    conffiles = run(tool("dpkg-deb"), "--info", built.deb, "conffiles").stdout.split()
    assert conffiles == [str(CONFIG)]


def test_config_is_shipped_for_root_alone(built: Built, tmp_path: Path):
    tar_path = tmp_path / "fs.tar"
    with tar_path.open("wb") as out:
        out.write(subprocess.run([tool("dpkg-deb"), "--fsys-tarfile", str(built.deb)],
                                 capture_output=True, check=True).stdout)
    with tarfile.open(tar_path) as tar:
        member = tar.getmember("./etc/hostsyncd/config.toml")
    assert (member.mode, member.uname, member.gname) == (0o600, "root", "root")


def test_contents(built: Built, tmp_path: Path):
    tree = tmp_path / "tree"
    run(tool("dpkg-deb"), "--extract", built.deb, tree)
    unit = tree / built.unit_dir.lstrip("/") / "hostsyncd.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    units = list(tree.rglob("hostsyncd.service"))
    assert units == [unit], units
    assert (tree / "etc/hostsyncd/config.toml").read_bytes() == (
        REPO / "config.example.toml"
    ).read_bytes()
    # It may hold an etcd password: root's alone, in the package and once installed.
    assert stat.S_IMODE((tree / "etc/hostsyncd/config.toml").stat().st_mode) == 0o600
    listing = run(tool("dpkg-deb"), "--contents", built.deb).stdout
    assert re.search(r"^-rw------- root/root .* \./etc/hostsyncd/config\.toml$", listing,
                     re.MULTILINE), listing
    # The unit's drop-in for [metrics] textfile, for the operator to copy (README: Metrics).
    assert (tree / "usr/share/doc/hostsyncd/examples/metrics.conf").read_bytes() == (
        REPO / "systemd/hostsyncd.service.d/metrics.conf.example"
    ).read_bytes()
    assert os.readlink(tree / "usr/bin/hostsyncd") == "/opt/hostsyncd/bin/hostsyncd"
    assert (tree / "opt/hostsyncd/bin/hostsyncd").read_text().startswith(
        "#!/opt/hostsyncd/bin/python\n"
    )
    assert os.readlink(tree / "opt/hostsyncd/bin/python3") == "/usr/bin/python3"
    site = tree / f"opt/hostsyncd/lib/python{built.python}/site-packages"
    assert (site / "hostsyncd").is_dir(), f"no hostsyncd in {site}"
    # Compiled modules for that interpreter and no other.
    tags = {p.name.split(".")[-2] for p in site.rglob("*.so") if p.name.count(".") >= 2}
    abi = "cpython-" + built.python.replace(".", "")
    assert tags and all(tag.startswith(abi) for tag in tags), tags
    assert not list((tree / "opt/hostsyncd").rglob("pip")), "pip is a build tool only"
    # The venv was built elsewhere: no file may still name the work tree.
    needle = str(REPO).encode()
    stale = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()
             and needle in p.read_bytes()]
    assert not stale, stale[:10]


def test_commands(install: Built):
    assert BIN.is_symlink()
    assert stat.S_IMODE(CONFIG.stat().st_mode) == 0o600
    assert (CONFIG.stat().st_uid, CONFIG.stat().st_gid) == (0, 0)
    version = run(BIN, "--version").stdout.strip()
    assert version == f"hostsyncd {install.version}"
    out = run(BIN, "check-config", CONFIG).stdout
    assert out.strip() == f"{CONFIG}: OK"


def test_venv_runs_on_debian_python_with_the_pinned_versions(install: Built):
    probe = (
        "import importlib.metadata as m, json, sys; print(json.dumps({"
        "'prefix': sys.prefix, 'base': sys.base_prefix, 'version': sys.version_info[:2], "
        "'dists': {d.metadata['Name'].lower().replace('_', '-'): d.version "
        "for d in m.distributions()}}))"
    )
    info = json.loads(run(VENV / "bin/python", "-c", probe).stdout)
    assert info["prefix"] == str(VENV)
    assert info["base"] == "/usr"
    assert info["version"] == [int(part) for part in install.python.split(".")]
    lock = {}
    for line in (REPO / "packaging/requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            lock[name.lower().replace("_", "-")] = pinned
    assert info["dists"] == {**lock, PACKAGE: install.version}
    run(VENV / "bin/python", "-c", "import systemd.journal, systemd.daemon")


def test_conffile_registered(install: Built):
    fmt = "-f=${Conffiles}"
    conffiles = run(tool("dpkg-query"), "--show", fmt, PACKAGE).stdout.split()
    assert str(CONFIG) in conffiles
    assert CONFIG.read_bytes() == (REPO / "config.example.toml").read_bytes()
    # It may hold etcd credentials: root's alone (`hostsyncd status` does without it).
    mode = CONFIG.stat()
    assert (stat.S_IMODE(mode.st_mode), mode.st_uid, mode.st_gid) == (0o600, 0, 0)


def test_installed_unit(install: Built):
    # The unit as shipped, now that its ExecStart exists.
    unit_path = Path(install.unit_dir) / "hostsyncd.service"
    assert unit_path.read_bytes() == UNIT.read_bytes()
    proc = run(tool("systemd-analyze"), "verify", unit_path, check=False)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stderr
    service = parse_unit(unit_path.read_text())["Service"]
    assert service["ExecStart"][0].split()[0] == str(BIN)
    # Enabled by deb-systemd-helper even though no systemd runs here; started only where
    # /run/systemd/system exists.
    assert ENABLED_LINK.is_symlink() and os.readlink(ENABLED_LINK) == str(unit_path)


def test_no_files_outside_the_package(install: Built):
    """Running it wrote nothing (bytecode, say) that dpkg doesn't know about, which would
    keep /opt/hostsyncd from being removed."""
    run(BIN, "--version")
    run(BIN, "check-config", CONFIG)
    # Everything `run` imports (docker, structlog, pydantic, systemd-python,
    # prometheus_client through hostsyncd.metrics), without
    # running anything against an engine.
    run(VENV / "bin/python", "-c", "import hostsyncd.cli, hostsyncd.daemon, hostsyncd.log")
    listed = set(run(tool("dpkg"), "-L", PACKAGE).stdout.split())
    on_disk = {str(p) for p in VENV.rglob("*")}
    assert on_disk - listed == set()


def test_reinstall_keeps_an_edited_config(install: Built):
    edit = "# a local edit\n"
    with CONFIG.open("a") as config:
        config.write(edit)
    run(tool("apt-get"), *APT, "install", "--reinstall", f"./{install.deb.relative_to(REPO)}",
        cwd=REPO, timeout=300)
    assert CONFIG.read_text().endswith(edit)
    run(BIN, "check-config", CONFIG)


def test_zz_purge(install: Built):
    # State a daemon run by hand leaves in /run/hostsyncd (under systemd, the runtime
    # directory goes when the service stops). A file of our own: a daemon elsewhere on the
    # machine may be writing the default state.json at any moment.
    state = Path("/run/hostsyncd") / f"purge-probe-{os.getpid()}.json"
    state.parent.mkdir(exist_ok=True)
    state.write_text("{}")
    with CONFIG.open("a") as config:
        config.write("# a local edit: purge removes it all the same\n")
    (CONFIG.parent / "config.toml.dpkg-old").write_text("# left by an upgrade\n")
    purge()
    assert not installed()
    proc = run(tool("dpkg"), "-L", PACKAGE, check=False)
    assert proc.returncode != 0 and not proc.stdout.strip(), proc.stdout
    unit_path = Path(install.unit_dir) / "hostsyncd.service"
    for path in (VENV, CONFIG.parent, BIN, unit_path, ENABLED_LINK, state):
        assert not os.path.lexists(path), f"{path} left behind by purge"
