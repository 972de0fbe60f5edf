"""systemd/hostsyncd.service: what the daemon needs from it, `systemd-analyze verify`, and
the sandbox as `systemd-analyze security` scores it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from hsd_pkgtest import UNIT, comment_text, parse_unit, run, tool

MAX_EXPOSURE = 2.0
EXEC_START = "/usr/bin/hostsyncd run --config /etc/hostsyncd/config.toml"


def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def last(section: dict[str, list[str]], key: str) -> str | None:
    values = section.get(key)
    return values[-1] if values else None


def words(section: dict[str, list[str]], key: str) -> list[str]:
    return " ".join(section.get(key, [])).split()


def test_service_contract():
    service = unit()["Service"]
    assert last(service, "Type") == "notify"
    assert last(service, "NotifyAccess") == "main"
    assert last(service, "WatchdogSec") == "30"
    assert last(service, "Restart") == "on-failure"
    assert service["ExecStart"] == [EXEC_START]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RuntimeDirectory"] == ["hostsyncd"]
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_engine_ordering_without_a_hard_dependency():
    section = unit()["Unit"]
    assert {"docker.service", "docker.socket"} <= set(words(section, "After"))
    assert "docker.service" in words(section, "Wants")
    # The daemon rides out an engine restart: nothing may stop it along with the engine.
    for key in ("Requires", "Requisite", "BindsTo", "PartOf", "Upholds"):
        assert not [w for w in words(section, key) if w.startswith("docker")], key


def test_sandbox_core():
    service = unit()["Service"]
    assert last(service, "ProtectSystem") == "strict"
    assert [p.lstrip("-") for p in words(service, "ReadWritePaths")] == [
        "/var/lib/docker/containers"
    ]
    assert last(service, "CapabilityBoundingSet") == ""
    assert last(service, "AmbientCapabilities") in (None, "")
    assert words(service, "RestrictAddressFamilies") == ["AF_UNIX"]
    assert last(service, "NoNewPrivileges") == "yes"


def test_systemd_analyze_verify(tmp_path: Path):
    # `verify` fails when ExecStart's program does not exist, and /usr/bin/hostsyncd exists
    # only once the package is installed. So this checks a copy whose ExecStart runs the
    # same entry point from the project venv; everything else is byte for byte the same.
    # (tests/packaging/test_deb.py verifies the installed unit as shipped, too.)
    analyze = tool("systemd-analyze")
    entry_point = Path(sys.executable).with_name("hostsyncd")
    assert entry_point.is_file(), f"{entry_point} missing: run 'make venv'"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    copy = tmp_path / "hostsyncd.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/hostsyncd ", f"ExecStart={entry_point} "))
    proc = run(analyze, "verify", copy, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), (
        proc.stdout + proc.stderr
    )


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path):
    # The check above would pass vacuously if verify ignored the file.
    analyze = tool("systemd-analyze")
    copy = tmp_path / "hostsyncd.service"
    copy.write_text(UNIT.read_text().replace("ProtectSystem=", "ProtectSystm="))
    proc = run(analyze, "verify", copy, check=False)
    assert "ProtectSystm" in proc.stderr


def security(*extra: str) -> str:
    analyze = tool("systemd-analyze")
    return run(analyze, "security", "--offline=true", "--no-pager", *extra, UNIT).stdout


def test_exposure_within_target():
    out = security()
    match = re.search(r"Overall exposure level for hostsyncd\.service: (\d+\.\d+)", out)
    assert match, out
    exposure = float(match.group(1))
    print(f"exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, out


def test_every_unset_hardening_item_is_explained():
    """Each item `systemd-analyze security` still counts against the unit is named in a
    comment that says why it stays."""
    items = json.loads(security("--json=short"))
    counted = [item["name"] for item in items if item.get("exposure") not in (None, "0.0")]
    assert counted, "expected a few (running as root, for one)"
    comments = comment_text(UNIT.read_text())
    for name in counted:
        assert name in comments, f"{name} counts against the unit but no comment explains it"
