"""The one-shot commands: `hostsyncd sync`, `check-config`, and `status` as a user who may
not read the config."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .util import LINKS, block_is, line, split

REPO = Path(__file__).resolve().parents[2]

VALID = """\
[docker]
url = "unix:///tmp/hsdtest/docker.sock"
containers_root = "/tmp/hsdtest/data/containers"
[links]
label = "hostsyncd.links"
on_target_stop = "remove"
[sync]
resync_interval = 60
[log]
level = "debug"
output = "json"
"""


def hostsyncd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HOSTSYNCD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "hostsyncd", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.engine
def test_sync_reconciles_once_and_exits_zero(containers, daemon):
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data"})
    path = containers.hosts_path(web)
    expected = [line(containers.ip(db), "data", db)]

    result = daemon.sync()
    assert result.returncode == 0, result.stderr
    # Done by the time it exits: no waiting.
    assert block_is(path, expected)()
    assert split(containers.hosts(web))[1] == expected

    mtime = os.stat(path).st_mtime_ns
    again = daemon.sync()
    assert again.returncode == 0, again.stderr
    assert os.stat(path).st_mtime_ns == mtime


def test_check_config_accepts_the_documented_format(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(VALID)
    result = hostsyncd("check-config", str(cfg))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('url = "unix:///tmp/hsdtest/docker.sock"', "url = 42", "docker.url"),
        ('url = "unix:///tmp/hsdtest/docker.sock"', 'url = "ftp://x"', "docker.url"),
        ("[docker]\n", '[docker]\nurll = "unix:///x"\n', "docker.urll"),
        ('on_target_stop = "remove"', 'on_target_stop = "sometimes"', "links.on_target_stop"),
        ("resync_interval = 60", 'resync_interval = "soon"', "sync.resync_interval"),
        ('level = "debug"', 'level = "loud"', "log.level"),
        ("[log]\n", "[bogus]\nx = 1\n[log]\n", "bogus"),
    ],
)
def test_check_config_names_the_bad_key(tmp_path, old, new, key):
    assert old in VALID
    cfg = tmp_path / "config.toml"
    cfg.write_text(VALID.replace(old, new, 1))
    result = hostsyncd("check-config", str(cfg))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert key in output, output
    assert "Traceback" not in output, output


def test_check_config_gives_the_line_of_a_toml_syntax_error(tmp_path):
    lines = VALID.splitlines()
    lines[2] = "containers_root = "  # line 3: a key without a value
    cfg = tmp_path / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    result = hostsyncd("check-config", str(cfg))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "line 3" in output, output
    assert "Traceback" not in output, output


def test_check_config_on_a_missing_file(tmp_path):
    result = hostsyncd("check-config", str(tmp_path / "nope.toml"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nope.toml" in output
    assert "Traceback" not in output


# In a private mount namespace, so that the machine's own /etc/hostsyncd and /run/hostsyncd
# (another daemon may be writing there) stay untouched: /run is a fresh tmpfs, /etc an
# overlay whose changes go to the test's directory. The daemon runs as the unit runs it
# (umask 0077, the config at the default path, 0600); `status` runs as nobody, with no
# --config, no $HOSTSYNCD_CONFIG, and a config it may not read.
AS_NOBODY = r"""
set -eu
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p {work}/upper {work}/work
mount -t overlay overlay -o lowerdir=/etc,upperdir={work}/upper,workdir={work}/work /etc
mkdir -p /etc/hostsyncd
install -m 0600 {config} /etc/hostsyncd/config.toml
(umask 0077; exec {python} -m hostsyncd run >{work}/daemon.out 2>{work}/daemon.err) &
daemon=$!
trap 'kill $daemon; wait $daemon || true' EXIT
n=0
until grep -q {want} /run/hostsyncd/state.json 2>/dev/null; do
    n=$((n + 1)); [ $n -lt 300 ] || {{ echo "no {want} in the state" >&2; exit 9; }}
    sleep 0.1
done
nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
$nobody cat /etc/hostsyncd/config.toml >/dev/null 2>&1 && {{ echo "config readable" >&2; exit 8; }}
stat -c '%a %n' /run/hostsyncd /run/hostsyncd/state.json >{work}/modes
$nobody {python} -m hostsyncd status >{work}/status.out 2>{work}/status.err
$nobody {python} -m hostsyncd status --json >{work}/status.json
"""


@pytest.mark.engine
def test_status_as_a_user_who_cannot_read_the_config(containers, daemon, tmp_path):
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv not found (util-linux)"
    db = containers.run("db")
    web = containers.run("web", labels={LINKS: f"{db}:data"})
    config = daemon.write_config(extra={"daemon": {"state_file": "/run/hostsyncd/state.json"}})
    work = tmp_path / "ns"
    work.mkdir()
    script = AS_NOBODY.format(work=shlex.quote(str(work)), config=shlex.quote(str(config)),
                              python=shlex.quote(sys.executable), want=shlex.quote(web))
    env = {k: v for k, v in daemon.env().items() if k != "HOSTSYNCD_CONFIG"}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    err = "".join((work / name).read_text() for name in ("daemon.err", "status.err")
                  if (work / name).exists())
    assert proc.returncode == 0, proc.stderr + err[-3000:]
    # A directory the daemon made under umask 0077, and the file: readable by all.
    assert (work / "modes").read_text().split() == [
        "755", "/run/hostsyncd", "644", "/run/hostsyncd/state.json"]
    out = (work / "status.out").read_text()
    assert out.startswith("hostsyncd pid "), out
    assert web in out, out
    state = json.loads((work / "status.json").read_text())
    assert web in [dep["name"] for dep in state["dependents"]]
    # Nothing about the unreadable config: status found the state where it looked.
    assert (work / "status.err").read_text() == ""
