"""Helpers for the package tests: required tools, running commands, reading unit files.

tests/packaging has no __init__.py on purpose: as a package it would be imported under the
name "packaging" and shadow the PyPI library of that name (which docker, for one, imports)
for the rest of the pytest run. So its modules are top-level ones, and this one has a name
nothing else uses."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "hostsyncd.service"


# The Debian releases a package is built for: (Debian version, the python3 it ships).
RELEASES = {"bookworm": ("12", "3.11"), "trixie": ("13", "3.13")}


@dataclass(frozen=True)
class Built:
    """One of the packages `make deb` made (the session fixture `built` in conftest.py)."""

    deb: Path
    version: str  # hostsyncd's; the package's is <version>+deb<debian>
    seconds: float  # of the whole `make deb`
    release: str
    debian: str
    python: str

    @property
    def unit_dir(self) -> str:
        # Debian 13 ships units under /usr (merged /usr); Debian 12 still in /lib.
        return "/usr/lib/systemd/system" if int(self.debian) >= 13 else "/lib/systemd/system"

    @property
    def deb_version(self) -> str:
        return f"{self.version}+deb{self.debian}"

# Tools come from scripts/ensure-deps.sh, which `make test` runs first. A missing one is a
# broken setup: fail, never skip.
_TOOL_PACKAGES = {
    "systemd-analyze": "systemd",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "mmdebstrap": "mmdebstrap",
    "apt-get": "apt",
    "make": "make",
    "dpkg": "dpkg",
    "systemd-nspawn": "systemd-container",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = _TOOL_PACKAGES.get(name, "?")
        pytest.fail(f"{name} not found (Debian package {package}): run scripts/ensure-deps.sh")
    return path


def run(
    *cmd: str | Path, timeout: float = 120, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a UTF-8 locale and no pager or colours; fail with its output."""
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", SYSTEMD_PAGER="",
               SYSTEMD_COLORS="0", DEBIAN_FRONTEND="noninteractive")
    env.pop("HOSTSYNCD_CONFIG", None)
    proc = subprocess.run(
        [str(part) for part in cmd], env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, cwd=cwd,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}}. Keys may repeat (an empty value
    resets a list in systemd; callers that care look at the values in order)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def comment_text(text: str) -> str:
    """All comment lines of a unit file, joined."""
    return "\n".join(
        line.strip() for line in text.splitlines() if line.strip().startswith(("#", ";"))
    )
