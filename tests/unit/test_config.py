"""TOML configuration: every documented key, every error naming its key path."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from hostsyncd import config as config_module
from hostsyncd.cli import main as cli_main
from hostsyncd.config import (
    ENV_VAR,
    ClusterConfig,
    Config,
    ConfigError,
    default_path,
    load,
    secret_warnings,
)

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


@pytest.mark.parametrize("value", ["ignore", "wait"])
def test_links_health_values(tmp_path: Path, value: str) -> None:
    assert load(write(tmp_path, f'[links]\nhealth = "{value}"\n')).links.health == value


def test_links_health_defaults_to_ignore(tmp_path: Path) -> None:
    assert load(write(tmp_path, "[links]\n")).links.health == "ignore"


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
        ('[links]\nhealth = "healthy"\n', "links.health"),
        ('[links]\ndomain = "bad domain"\n', "links.domain"),
        ('[links]\ndomain = "-internal"\n', "links.domain"),
        ('[links]\ndomain = "a..b"\n', "links.domain"),
        ("[links]\ndomain = 5\n", "links.domain"),
        ("[links]\nhealth = true\n", "links.health"),
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


# --- [cluster] ----------------------------------------------------------------------------


def test_cluster_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = socket.gethostname().split(".")[0] or "localhost"
    assert load(write(tmp_path, "")).cluster.node == real
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "web-1.dc2.example.com")
    cluster = load(write(tmp_path, "[cluster]\n")).cluster
    assert cluster.enabled is False
    assert cluster.prefix == "/hostsyncd"
    assert cluster.lease_ttl == 10
    assert cluster.node == "web-1"
    assert cluster.endpoints == ["http://127.0.0.1:2379"]
    assert cluster.advertise_network == ""
    assert cluster.publish_label == "hostsyncd.publish"
    assert (cluster.ca, cluster.cert, cluster.key, cluster.password_file) == (None,) * 4
    assert (cluster.username, cluster.password.get_secret_value()) == ("", "")
    assert cluster.resolve_bare_names is False


def test_cluster_node_defaults_to_the_host_name_without_a_domain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "db7")
    assert ClusterConfig().node == "db7"
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "db7.lan")
    assert ClusterConfig().node == "db7"


def test_cluster_enabled_with_explicit_node(tmp_path: Path) -> None:
    cluster = load(write(tmp_path, '[cluster]\nenabled = true\nnode = "b"\n')).cluster
    assert cluster.enabled is True
    assert cluster.node == "b"


@pytest.mark.parametrize(("given", "kept"), [
    (["http://h:2379/"], ["http://h:2379"]),
    (["https://10.0.0.1:2379/", "http://[::1]:2379"], ["https://10.0.0.1:2379",
                                                       "http://[::1]:2379"]),
    (["http://etcd"], ["http://etcd"]),
])
def test_cluster_endpoints_lose_a_trailing_slash(tmp_path: Path, given: list[str],
                                                 kept: list[str]) -> None:
    text = "[cluster]\nendpoints = [" + ", ".join(f'"{u}"' for u in given) + "]\n"
    assert load(write(tmp_path, text)).cluster.endpoints == kept


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[cluster]\nendpoints = []\n", "cluster.endpoints"),
        ('[cluster]\nendpoints = ["127.0.0.1:2379"]\n', "cluster.endpoints"),
        ('[cluster]\nendpoints = ["unix:///run/etcd.sock"]\n', "cluster.endpoints"),
        ('[cluster]\nendpoints = ["http://h:2379/v3"]\n', "cluster.endpoints"),
        ('[cluster]\nendpoints = ["http://h 2379"]\n', "cluster.endpoints"),
        ('[cluster]\nendpoints = "http://h:2379"\n', "cluster.endpoints"),
        ('[cluster]\nprefix = "hostsyncd"\n', "cluster.prefix"),
        ('[cluster]\nprefix = "/hostsyncd/"\n', "cluster.prefix"),
        ('[cluster]\nprefix = "/"\n', "cluster.prefix"),
        ('[cluster]\nprefix = ""\n', "cluster.prefix"),
        ('[cluster]\nprefix = "/a//b"\n', "cluster.prefix"),
        ('[cluster]\nprefix = "/a b"\n', "cluster.prefix"),
        ('[cluster]\nnode = ""\n', "cluster.node"),
        ('[cluster]\nnode = "-web"\n', "cluster.node"),
        ('[cluster]\nnode = "web/1"\n', "cluster.node"),
        ('[cluster]\nnode = "a..b"\n', "cluster.node"),
        ('[cluster]\nnode = "web 1"\n', "cluster.node"),
        ('[cluster]\nnode = "wéb"\n', "cluster.node"),
        (f'[cluster]\nnode = "{"x" * 64}"\n', "cluster.node"),
        ("[cluster]\nlease_ttl = 1\n", "cluster.lease_ttl"),
        ("[cluster]\nlease_ttl = 0\n", "cluster.lease_ttl"),
        ("[cluster]\nlease_ttl = 3601\n", "cluster.lease_ttl"),
        ('[cluster]\nlease_ttl = "10s"\n', "cluster.lease_ttl"),
        ("[cluster]\nlease_ttl = 2.5\n", "cluster.lease_ttl"),
        ("[cluster]\ntimeout = 0\n", "cluster.timeout"),
        ('[cluster]\npublish_label = ""\n', "cluster.publish_label"),
        ('[cluster]\nca = "etcd-ca.pem"\n', "cluster.ca"),
        ('[cluster]\nenabled = "maybe"\n', "cluster.enabled"),
        ("[cluster]\nendpoint = 'http://h:2379'\n", "cluster.endpoint"),
    ],
)
def test_cluster_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = error_of(tmp_path, text)
    assert f"  {key}" in message


@pytest.mark.parametrize("node", ["b", "web-1", "web_1", "n0.dc2", "7", "x" * 63])
def test_cluster_node_names_accepted(tmp_path: Path, node: str) -> None:
    assert load(write(tmp_path, f'[cluster]\nnode = "{node}"\n')).cluster.node == node


@pytest.mark.parametrize("ttl", [2, 10, 3600])
def test_cluster_lease_ttl_bounds(tmp_path: Path, ttl: int) -> None:
    assert load(write(tmp_path, f"[cluster]\nlease_ttl = {ttl}\n")).cluster.lease_ttl == ttl


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[cluster]\ncert = "/etc/c.pem"\n', "cert and key"),
        ('[cluster]\nkey = "/etc/k.pem"\n', "cert and key"),
        ('[cluster]\npassword = "s3cret"\n', "username"),
        ('[cluster]\npassword_file = "/etc/pw"\n', "username"),
        ('[cluster]\nusername = "u"\npassword = "s"\npassword_file = "/etc/pw"\n', "not both"),
    ],
)
def test_cluster_inconsistent_credentials_are_rejected(tmp_path: Path, text: str,
                                                       words: str) -> None:
    message = error_of(tmp_path, text)
    assert "  cluster" in message
    assert words in message


def test_cluster_consistent_credentials_are_accepted(tmp_path: Path) -> None:
    cluster = load(write(tmp_path, '[cluster]\ncert = "/etc/c.pem"\nkey = "/etc/k.pem"\n'
                                   'username = "u"\npassword = "p"\n')).cluster
    assert (cluster.cert, cluster.key) == (Path("/etc/c.pem"), Path("/etc/k.pem"))
    assert (cluster.username, cluster.password.get_secret_value()) == ("u", "p")
    cluster = load(write(tmp_path, '[cluster]\nusername = "u"\npassword_file = "/etc/pw"\n'
                         )).cluster
    assert cluster.password_file == Path("/etc/pw")
    assert load(write(tmp_path, '[cluster]\nusername = "u"\n')).cluster.username == "u"


def _example_cluster_uncommented() -> tuple[str, set[str]]:
    """The example's [cluster] section with every commented-out `# key = value` enabled."""
    text = EXAMPLE.read_text()
    section = text[text.index("[cluster]"):]
    lines, keys = [], set()
    for line in section.splitlines():
        m = re.fullmatch(r"#?\s?([a-z_]+) = (.+)", line)
        if m:
            line = f"{m[1]} = {m[2]}"
            keys.add(m[1])
        lines.append(line)
    return "\n".join(lines) + "\n", keys


def test_every_documented_cluster_key_is_accepted_uncommented(tmp_path: Path) -> None:
    text, keys = _example_cluster_uncommented()
    assert {"enabled", "endpoints", "prefix", "node", "lease_ttl", "advertise_network",
            "publish_label", "timeout", "ca", "cert", "key", "username",
            "password_file", "resolve_bare_names"} <= keys
    cluster = load(write(tmp_path, text)).cluster
    assert cluster.node == "web-1"
    assert cluster.ca == Path("/etc/hostsyncd/etcd-ca.pem")
    assert cluster.cert == Path("/etc/hostsyncd/etcd-client.pem")
    assert cluster.key == Path("/etc/hostsyncd/etcd-client-key.pem")
    assert cluster.username == "hostsyncd"
    assert cluster.password_file == Path("/etc/hostsyncd/etcd-password")
    # Every key the example documents is a real one (and no unknown-key error slipped by).
    assert keys <= set(ClusterConfig.model_fields)


def test_every_cluster_key_at_once(tmp_path: Path) -> None:
    cluster = load(write(tmp_path, """
[cluster]
enabled = true
endpoints = ["https://e1:2379", "https://e2:2379/"]
prefix = "/corp/hostsyncd"
node = "b"
lease_ttl = 30
advertise_network = "macvlan0"
publish_label = "corp.publish"
timeout = 2.5
ca = "/etc/ca.pem"
cert = "/etc/c.pem"
key = "/etc/k.pem"
username = "u"
password = "p"
""")).cluster
    assert cluster == ClusterConfig(
        enabled=True, endpoints=["https://e1:2379", "https://e2:2379"],
        prefix="/corp/hostsyncd", node="b", lease_ttl=30, advertise_network="macvlan0",
        publish_label="corp.publish", timeout=2.5, ca=Path("/etc/ca.pem"),
        cert=Path("/etc/c.pem"), key=Path("/etc/k.pem"), username="u", password="p",
    )
    assert cluster.password.get_secret_value() == "p"


# --- secrets ---------------------------------------------------------------------------------

SECRET = "s3cret-Pa55"


def test_the_password_is_a_secret_in_repr_str_and_dumps(tmp_path: Path) -> None:
    config = load(write(tmp_path, f'[cluster]\nusername = "u"\npassword = "{SECRET}"\n'))
    for shown in (repr(config), str(config), repr(config.cluster), str(config.model_dump()),
                  config.model_dump_json()):
        assert SECRET not in shown
    assert "**********" in repr(config.cluster)
    assert config.cluster.password.get_secret_value() == SECRET


@pytest.mark.parametrize("url", [f"http://u:{SECRET}@10.0.0.1:2379",
                                 f"https://u:{SECRET}@e1:2379", f"https://{SECRET}@e1:2379",
                                 f"http://u:{SECRET}@127.0.0.1:2379/"])
def test_user_info_in_an_endpoint_is_an_error_naming_the_key_and_not_the_password(
    tmp_path: Path, url: str,
) -> None:
    message = error_of(tmp_path, f'[cluster]\nendpoints = ["https://ok:2379", "{url}"]\n')
    assert "cluster.endpoints" in message and "endpoint 2 holds user info" in message
    assert SECRET not in message


@pytest.mark.parametrize("endpoint", ["http://10.0.0.1:2379", "http://etcd.example:2379",
                                      "http://[2001:db8::1]:2379", "http://0.0.0.0:2379"])
@pytest.mark.parametrize("credential", [f'password = "{SECRET}"',
                                        'password_file = "/etc/pw"', ""])
def test_authentication_over_plain_http_to_another_host_is_refused(
    tmp_path: Path, endpoint: str, credential: str,
) -> None:
    message = error_of(tmp_path, f'[cluster]\nendpoints = ["https://e1:2379", "{endpoint}"]\n'
                                 f'username = "u"\n{credential}\n')
    assert "cluster" in message and "endpoints" in message and "https://" in message
    assert endpoint in message and SECRET not in message


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:2379", "http://127.1.2.3:2379",
                                      "http://localhost:2379", "http://[::1]:2379",
                                      "https://10.0.0.1:2379"])
def test_authentication_over_http_to_loopback_or_over_https_is_accepted(
    tmp_path: Path, endpoint: str,
) -> None:
    cluster = load(write(tmp_path, f'[cluster]\nendpoints = ["{endpoint}"]\nusername = "u"\n'
                                   f'password = "{SECRET}"\n')).cluster
    assert cluster.endpoints == [endpoint]


def test_plain_http_to_another_host_without_a_user_is_accepted(tmp_path: Path) -> None:
    assert load(write(tmp_path, '[cluster]\nendpoints = ["http://10.0.0.1:2379"]\n')
                ).cluster.endpoints == ["http://10.0.0.1:2379"]


def _secret_config(tmp_path: Path, mode: int, pw_mode: int | None = None) -> Path:
    if pw_mode is None:
        path = write(tmp_path, f'[cluster]\nusername = "u"\npassword = "{SECRET}"\n')
    else:
        pw = tmp_path / "pw"
        pw.write_text(SECRET + "\n")
        pw.chmod(pw_mode)
        path = write(tmp_path, f'[cluster]\nusername = "u"\npassword_file = "{pw}"\n')
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_config_holding_a_password_readable_by_others_is_warned_about(
    tmp_path: Path, mode: int,
) -> None:
    path = _secret_config(tmp_path, mode)
    (warning,) = secret_warnings(path, load(path))
    assert str(path) in warning and "cluster.password" in warning and f"{mode:04o}" in warning
    assert SECRET not in warning


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o620])
def test_a_config_holding_a_password_private_to_its_owner_is_not_warned_about(
    tmp_path: Path, mode: int,
) -> None:
    path = _secret_config(tmp_path, mode)
    assert secret_warnings(path, load(path)) == []


def test_a_config_without_a_secret_may_be_world_readable(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\nusername = "u"\n')
    path.chmod(0o644)
    assert secret_warnings(path, load(path)) == []


@pytest.mark.parametrize(("pw_mode", "warned"), [(0o644, True), (0o640, True),
                                                 (0o600, False), (0o400, False)])
def test_a_password_file_readable_by_others_is_warned_about(
    tmp_path: Path, pw_mode: int, warned: bool,
) -> None:
    path = _secret_config(tmp_path, 0o644, pw_mode)  # the config itself holds no secret
    warnings = secret_warnings(path, load(path))
    assert len(warnings) == warned
    if warned:
        assert "password_file" in warnings[0] and str(tmp_path / "pw") in warnings[0]


def test_check_config_warns_but_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       ) -> None:  # fmt: skip
    path = _secret_config(tmp_path, 0o644)
    assert cli_main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "OK" in out
    assert "warning" in err and "readable by group or others" in err and str(path) in err
    assert SECRET not in out + err
    os.chmod(path, 0o600)
    assert cli_main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_hosts_roots_default_to_containers_root_and_refuse_slash(tmp_path: Path) -> None:
    from hostsyncd.config import DockerConfig

    assert DockerConfig().write_roots == (Path("/var/lib/docker/containers"),)
    roots = DockerConfig(hosts_roots=("/run/containers/storage",)).write_roots
    assert roots == (Path("/run/containers/storage"),)
    for bad in ("/", "relative/dir"):
        with pytest.raises(ValueError, match="hosts_roots"):
            DockerConfig(hosts_roots=(bad,))
