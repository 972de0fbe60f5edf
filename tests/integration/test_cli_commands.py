"""The one-shot commands: `hostsyncd sync` and `hostsyncd check-config`."""

from __future__ import annotations

import os
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
