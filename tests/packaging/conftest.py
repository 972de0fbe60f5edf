"""The .deb, built once per session by `make deb` and shared by the package tests."""

from __future__ import annotations

import os
import time
import tomllib

import pytest
from hsd_pkgtest import REPO, Built, run, tool


@pytest.fixture(scope="session")
def built() -> Built:
    assert os.geteuid() == 0, "the package tests install a package: run them as root"
    for name in ("make", "dpkg-deb", "dpkg-shlibdeps"):
        tool(name)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    arch = run(tool("dpkg"), "--print-architecture").stdout.strip()
    start = time.monotonic()
    run(tool("make"), "--no-print-directory", "deb", cwd=REPO, timeout=900)
    seconds = time.monotonic() - start
    deb = REPO / "dist" / f"hostsyncd_{version}_{arch}.deb"
    assert deb.is_file(), f"make deb did not produce {deb}"
    print(f"make deb: {seconds:.1f}s, {deb.name}: {deb.stat().st_size / 2**20:.1f} MiB")
    return Built(deb, version, seconds)
