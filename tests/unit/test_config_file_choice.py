"""Which config the commands use: the named file, else the default path, else the defaults;
and the state file that `status` reads being readable by everyone."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostsyncd import cli, state
from hostsyncd import config as config_module
from hostsyncd.config import ENV_VAR, Config, ConfigError, ConfigUnreadable, load, locate

TWEAKED = '[links]\nlabel = "example.links"\n'


@pytest.fixture
def default_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The default path moved into tmp_path (not created); no $HOSTSYNCD_CONFIG."""
    path = tmp_path / "etc" / "config.toml"
    monkeypatch.setattr(config_module, "DEFAULT_PATH", path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    return path


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Config]]]:
    """The config each command body was handed (the bodies themselves are not run: they
    would reach an engine)."""
    seen: list[tuple[str, Config]] = []

    def record(name: str) -> Any:
        def body(config: Config, *args: Any, **kwargs: Any) -> int:
            seen.append((name, config))
            return 0
        return body

    for name in ("_sync", "_graph", "_status"):
        monkeypatch.setattr(cli, name, record(name))
    monkeypatch.setattr(cli.hlog, "configure", lambda *args: None)
    yield seen


def test_locate_prefers_the_command_line_then_the_environment(default_at: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    assert locate(None) == (default_at, False)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.toml"))
    assert locate(None) == (tmp_path / "env.toml", True)
    assert locate(tmp_path / "given.toml") == (tmp_path / "given.toml", True)


def test_load_missing_ok_gives_the_defaults_only_for_a_missing_file(tmp_path: Path) -> None:
    assert load(tmp_path / "absent.toml", missing_ok=True) == Config()
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read"):
        load(tmp_path / "absent.toml")
    # Present but unreadable (a directory here; EACCES for a user, see the integration
    # test): never silently the defaults.
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigUnreadable, match=r"dir\.toml: cannot read"):
        load(tmp_path / "dir.toml", missing_ok=True)
    # A present file is read, missing_ok or not.
    (tmp_path / "c.toml").write_text(TWEAKED)
    assert load(tmp_path / "c.toml", missing_ok=True).links.label == "example.links"


@pytest.mark.parametrize("command", ["status", "graph", "sync"])
def test_no_file_at_the_default_path_means_the_defaults(default_at: Path, commands: list,
                                                        command: str) -> None:
    assert cli.main([command]) == 0
    assert commands == [(f"_{command}", Config())]


@pytest.mark.parametrize("command", ["status", "graph", "sync"])
def test_a_file_at_the_default_path_is_used(default_at: Path, commands: list,
                                            command: str) -> None:
    default_at.parent.mkdir()
    default_at.write_text(TWEAKED)
    assert cli.main([command]) == 0
    assert commands[0][1].links.label == "example.links"


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("command", ["status", "graph", "sync"])
def test_a_named_file_that_is_missing_is_an_error(default_at: Path, commands: list,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, command: str, how: str) -> None:
    named = tmp_path / "named.toml"
    if how == "option":
        argv = [command, "--config", str(named)]
    else:
        monkeypatch.setenv(ENV_VAR, str(named))
        argv = [command]
    assert cli.main(argv) == cli.EXIT_CONFIG
    assert commands == []
    assert f"{named}: cannot read: No such file or directory" in capsys.readouterr().err


def test_check_config_without_a_file(default_at: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out == f"{default_at}: no such file; every key has its default\n"
    assert cli.main(["check-config", str(default_at)]) == cli.EXIT_CONFIG


@pytest.mark.parametrize("command", ["graph", "sync"])
def test_an_unreadable_default_config_stops_graph_and_sync(default_at: Path, commands: list,
                                                           command: str) -> None:
    # They act on what the config says (engine, label, cluster): no guessing.
    default_at.mkdir(parents=True)  # present, but read() fails
    assert cli.main([command]) == cli.EXIT_CONFIG
    assert commands == []


def test_status_does_without_an_unreadable_default_config(default_at: Path, commands: list
                                                          ) -> None:
    default_at.mkdir(parents=True)
    assert cli.main(["status"]) == 0
    assert commands == [("_status", Config())]


def test_status_reports_the_unreadable_config_when_no_state_is_found(
        default_at: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    default_at.mkdir(parents=True)
    monkeypatch.setattr(cli, "Config", lambda: Config.model_validate(
        {"daemon": {"state_file": str(tmp_path / "none.json")}}))
    assert cli.main(["status"]) == cli.EXIT_NOT_RUNNING
    err = capsys.readouterr().err
    assert f"no state from a running daemon at {tmp_path / 'none.json'}" in err
    assert f"{default_at}: cannot read" in err and "used the default state_file" in err


def test_a_named_unreadable_config_stops_status(default_at: Path, commands: list,
                                                tmp_path: Path) -> None:
    assert cli.main(["status", "--config", str(tmp_path)]) == cli.EXIT_CONFIG
    assert commands == []


@pytest.mark.parametrize("url", ["tcp://admin:secret@10.0.0.1:2375",
                                 "https://u:p@engine.example:2376/v1"])
def test_a_password_in_the_engine_url_is_rejected(tmp_path: Path, url: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[docker]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=r"docker\.url: .*must not hold a password"):
        load(path)


def test_a_password_in_an_etcd_endpoint_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cluster]\nendpoints = ["http://10.0.0.1:2379", "http://u:pw@10.0.0.2:2379"]\n')
    either = r"cluster\.endpoints: .*(must not hold a password|holds user info)"
    with pytest.raises(ConfigError, match=either):
        load(path)


def test_a_user_without_password_is_fine_in_an_ssh_url(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[docker]\nurl = "ssh://deploy@engine.example"\n')
    assert load(path).docker.url == "ssh://deploy@engine.example"


def test_state_file_and_its_new_directories_are_readable_by_all(tmp_path: Path) -> None:
    path = tmp_path / "run" / "hostsyncd" / "state.json"
    old = os.umask(0o077)  # the unit's UMask=
    try:
        state.write_atomically(path, {"pid": 1})
    finally:
        os.umask(old)
    for directory in (tmp_path / "run", path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"pid": 1}


def test_an_existing_state_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)  # the admin's choice, umask aside
    state.write_atomically(directory / "state.json", {})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
