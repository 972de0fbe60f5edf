"""The .debs, built once per session by `make deb` and shared by the package tests: one
for each Debian release in RELEASES, each test that takes `built` runs for each."""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

import pytest
from hsd_pkgtest import RELEASES, REPO, Built, run, tool


@pytest.fixture(scope="session")
def debs() -> dict[str, Built]:
    assert os.geteuid() == 0, "the package tests install a package: run them as root"
    for name in ("make", "dpkg-deb", "mmdebstrap", "systemd-nspawn"):
        tool(name)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    arch = run(tool("dpkg"), "--print-architecture").stdout.strip()
    start = time.monotonic()
    # Cold (no cached roots, no wheels), this makes a root per release first: minutes.
    run(tool("make"), "--no-print-directory", "deb", cwd=REPO, timeout=1800)
    seconds = time.monotonic() - start
    built = {}
    for release, (debian, python) in RELEASES.items():
        deb = REPO / "dist" / f"hostsyncd_{version}+deb{debian}_{arch}.deb"
        assert deb.is_file(), f"make deb did not produce {deb}"
        print(f"make deb: {seconds:.1f}s, {deb.name}: {deb.stat().st_size / 2**20:.1f} MiB")
        built[release] = Built(deb, version, seconds, release, debian, python)
    return built


@pytest.fixture(scope="session", params=list(RELEASES))
def built(request: pytest.FixtureRequest, debs: dict[str, Built]) -> Built:
    return debs[request.param]


@pytest.fixture(scope="session")
def host_built(debs: dict[str, Built]) -> Built:
    """The package for the release this machine runs."""
    fields = dict(line.split("=", 1) for line in
                  Path("/etc/os-release").read_text().splitlines() if "=" in line)
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if codename not in debs:
        pytest.fail(f"this machine runs {codename or 'an unknown release'}; packages are "
                    f"built for {', '.join(debs)} only")
    return debs[codename]
