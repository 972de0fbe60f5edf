"""TOML configuration: every documented key, every error naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hostsyncd.config import ENV_VAR, Config, ConfigError, default_path, load

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str | bytes) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, ""))
    assert cfg == Config()
    assert cfg.docker.url == "unix:///var/run/docker.sock"
    assert cfg.docker.containers_root == Path("/var/lib/docker/containers")
    assert cfg.links.label == "hostsyncd.links"
    assert cfg.links.on_target_stop == "remove"
    assert cfg.sync.resync_interval == 60
    assert cfg.log.level == "info"
    assert cfg.log.output == "auto"


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            """
[docker]
url = "tcp://127.0.0.1:2375"
containers_root = "/srv/docker/containers"

[links]
label = "example.links"
on_target_stop = "keep"

[sync]
resync_interval = 15

[log]
level = "debug"
output = "json"
""",
        )
    )
    assert cfg.docker.url == "tcp://127.0.0.1:2375"
    assert cfg.docker.containers_root == Path("/srv/docker/containers")
    assert cfg.links.label == "example.links"
    assert cfg.links.on_target_stop == "keep"
    assert cfg.sync.resync_interval == 15
    assert cfg.log.level == "debug"
    assert cfg.log.output == "json"


def test_a_partial_section_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[links]\non_target_stop = "keep"\n'))
    assert cfg.links.on_target_stop == "keep"
    assert cfg.links.label == "hostsyncd.links"
    assert cfg.docker == Config().docker


@pytest.mark.parametrize("url", ["unix:///run/docker.sock", "tcp://h:2376", "http://h",
                                 "https://h:2376", "ssh://user@host"])
def test_url_schemes_accepted(tmp_path: Path, url: str) -> None:
    assert load(write(tmp_path, f'[docker]\nurl = "{url}"\n')).docker.url == url


@pytest.mark.parametrize("value", ["remove", "keep"])
def test_on_target_stop_values(tmp_path: Path, value: str) -> None:
    cfg = load(write(tmp_path, f'[links]\non_target_stop = "{value}"\n'))
    assert cfg.links.on_target_stop == value


@pytest.mark.parametrize("value", ["debug", "info", "warning", "error"])
def test_log_levels(tmp_path: Path, value: str) -> None:
    assert load(write(tmp_path, f'[log]\nlevel = "{value}"\n')).log.level == value


@pytest.mark.parametrize("value", ["auto", "console", "json", "journald"])
def test_log_outputs(tmp_path: Path, value: str) -> None:
    assert load(write(tmp_path, f'[log]\noutput = "{value}"\n')).log.output == value


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[docker]\nbogus = 1\n", "docker.bogus"),
        ("[links]\nlabels = 'x'\n", "links.labels"),
        ("[sync]\ninterval = 5\n", "sync.interval"),
        ("[log]\nformat = 'json'\n", "log.format"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("toplevel = 1\n", "toplevel"),
    ],
)
def test_unknown_keys_are_rejected_and_named(tmp_path: Path, text: str, key: str) -> None:
    message = error_of(tmp_path, text)
    assert f"{key}: unknown key" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[docker]\nurl = "ftp://example"\n', "docker.url"),
        ('[docker]\nurl = "/var/run/docker.sock"\n', "docker.url"),
        ("[docker]\nurl = 5\n", "docker.url"),
        ('[docker]\ncontainers_root = "relative/path"\n', "docker.containers_root"),
        ('[links]\non_target_stop = "later"\n', "links.on_target_stop"),
        ('[links]\non_target_stop = "KEEP"\n', "links.on_target_stop"),
        ('[links]\nlabel = ""\n', "links.label"),
        ("[sync]\nresync_interval = 0\n", "sync.resync_interval"),
        ("[sync]\nresync_interval = -5\n", "sync.resync_interval"),
        ('[sync]\nresync_interval = "often"\n', "sync.resync_interval"),
        ('[log]\nlevel = "verbose"\n', "log.level"),
        ('[log]\noutput = "syslog"\n', "log.output"),
        ("docker = 5\n", "docker"),
    ],
)
def test_wrong_values_are_named(tmp_path: Path, text: str, key: str) -> None:
    message = error_of(tmp_path, text)
    assert f"  {key}: " in message


def test_all_errors_are_listed(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, '[docker]\nurl = "ftp://x"\nbogus = 1\n[log]\nlevel = "loud"\n'
    )
    for key in ("docker.url", "docker.bogus", "log.level"):
        assert key in message


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[docker]\nurl = "unix:///x"\nthis is not toml\n')
    assert "TOML syntax error" in message
    assert "line 3" in message


def test_toml_duplicate_key_gives_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[log]\nlevel = "info"\n\nlevel = "debug"\n')
    assert "line 4" in message


def test_non_utf8_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, b'[links]\nlabel = "\xff"\n')
    assert "UTF-8" in message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_default_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "c.toml"))
    assert default_path() == tmp_path / "c.toml"
    monkeypatch.delenv(ENV_VAR)
    assert default_path() == Path("/etc/hostsyncd/config.toml")


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.links.label = "x"  # type: ignore[misc]


def test_example_config_loads_and_shows_the_defaults() -> None:
    # The example says "the values shown are the defaults": hold it to that.
    assert load(EXAMPLE) == Config()
