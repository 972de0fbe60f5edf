"""systemd/hostsyncd.service: what the daemon needs from it, `systemd-analyze verify`, and
the sandbox as `systemd-analyze security` scores it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from hsd_pkgtest import UNIT, comment_text, parse_unit, run, tool

MAX_EXPOSURE = 2.0
METRICS_DROP_IN = UNIT.parent / "hostsyncd.service.d" / "metrics.conf.example"
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


def verifiable_copy(directory: Path) -> Path:
    """The unit in `directory`, its ExecStart running the project venv's entry point.

    `verify` fails when ExecStart's program does not exist, and /usr/bin/hostsyncd exists
    only once the package is installed; everything else is byte for byte the same.
    (tests/packaging/test_deb.py verifies the installed unit as shipped, too.)"""
    entry_point = Path(sys.executable).with_name("hostsyncd")
    assert entry_point.is_file(), f"{entry_point} missing: run 'make venv'"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    copy = directory / "hostsyncd.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/hostsyncd ", f"ExecStart={entry_point} "))
    return copy


def verify(unit_file: Path) -> str:
    """What `systemd-analyze verify` says about it ("" when it has nothing to say)."""
    proc = run(tool("systemd-analyze"), "verify", unit_file, check=False)
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else " (failed)")


def test_systemd_analyze_verify(tmp_path: Path):
    assert verify(verifiable_copy(tmp_path)) == ""


def test_metrics_drop_in_example_opens_only_the_textfile_directory(tmp_path: Path):
    # systemd reads <unit>.d/*.conf beside a unit file given by path, as it would from
    # /etc/systemd/system/hostsyncd.service.d/.
    text = METRICS_DROP_IN.read_text()
    assert parse_unit(text) == {
        "Service": {"ReadWritePaths": ["-/var/lib/prometheus/node-exporter"]}}
    unit_file = verifiable_copy(tmp_path)
    drop_ins = tmp_path / "hostsyncd.service.d"
    drop_ins.mkdir()
    (drop_ins / "metrics.conf").write_text(text)
    assert verify(unit_file) == ""
    assert _exposure(security(unit_file)) <= MAX_EXPOSURE
    # The checks above would pass vacuously if the drop-in were not read.
    (drop_ins / "metrics.conf").write_text(text.replace("ReadWritePaths=", "ReadWritePath="))
    assert "ReadWritePath" in verify(unit_file)


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path):
    # The check above would pass vacuously if verify ignored the file.
    analyze = tool("systemd-analyze")
    copy = tmp_path / "hostsyncd.service"
    copy.write_text(UNIT.read_text().replace("ProtectSystem=", "ProtectSystm="))
    proc = run(analyze, "verify", copy, check=False)
    assert "ProtectSystm" in proc.stderr


def security(unit_file: Path = UNIT, *extra: str) -> str:
    analyze = tool("systemd-analyze")
    return run(analyze, "security", "--offline=true", "--no-pager", *extra, unit_file).stdout


def _exposure(out: str) -> float:
    match = re.search(r"Overall exposure level for hostsyncd\.service: (\d+\.\d+)", out)
    assert match, out
    print(f"exposure {match.group(1)}")
    return float(match.group(1))


def test_exposure_within_target():
    out = security()
    assert _exposure(out) <= MAX_EXPOSURE, out


def test_every_unset_hardening_item_is_explained():
    """Each item `systemd-analyze security` still counts against the unit is named in a
    comment that says why it stays."""
    items = json.loads(security(UNIT, "--json=short"))
    counted = [item["name"] for item in items if item.get("exposure") not in (None, "0.0")]
    assert counted, "expected a few (running as root, for one)"
    comments = comment_text(UNIT.read_text())
    for name in counted:
        assert name in comments, f"{name} counts against the unit but no comment explains it"
