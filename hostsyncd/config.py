"""TOML configuration, validated by pydantic. Every error names the key path it is about.

Imports: core; pydantic.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from hostsyncd.core.links import is_host_name

DEFAULT_PATH = Path("/etc/hostsyncd/config.toml")
ENV_VAR = "HOSTSYNCD_CONFIG"


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


def _no_password(url: str) -> None:
    """URLs end up in the state file, which every user may read (state.py): a password in
    one would be shown to all. etcd's has keys of its own (password_file)."""
    userinfo = url.partition("://")[2].split("/", 1)[0].rpartition("@")[0]
    if ":" in userinfo:
        raise ValueError("must not hold a password (user:password@): it would be shown "
                         "to every user by `hostsyncd status`")


class ConfigError(Exception):
    """A config that can't be used; the message is meant for the operator as is."""


class ConfigUnreadable(ConfigError):
    """The file is there but cannot be read (permissions, I/O): `status` can do without it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DockerConfig(_Section):
    url: str = "unix:///var/run/docker.sock"
    containers_root: AbsolutePath = Path("/var/lib/docker/containers")
    # The directories hosts files may be written under. Empty: containers_root alone, which
    # is all Docker needs. Podman keeps each file under its storage's runroot (README).
    hosts_roots: tuple[AbsolutePath, ...] = ()
    api_timeout: float = Field(10.0, gt=0, le=300)

    @field_validator("hosts_roots")
    @classmethod
    def _not_everything(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        if any(root == Path("/") for root in roots):
            raise ValueError("\"/\" would let every file be written; name the directories "
                             "the engine keeps hosts files in")
        return roots

    @property
    def write_roots(self) -> tuple[Path, ...]:
        return self.hosts_roots or (self.containers_root,)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("unix://", "tcp://", "http://", "https://", "ssh://")):
            raise ValueError("must start with unix://, tcp://, http://, https:// or ssh://")
        _no_password(url)
        return url


class LinksConfig(_Section):
    label: str = Field("hostsyncd.links", min_length=1)
    on_target_stop: Literal["remove", "keep"] = "remove"
    # "wait": a target with a healthcheck gets its lines only while healthy (README).
    health: Literal["ignore", "wait"] = "ignore"
    # A search domain: every line also carries `<alias>.<domain>` (and the target's name
    # with it). "" is none.
    domain: str = ""

    @field_validator("domain")
    @classmethod
    def _host_name(cls, domain: str) -> str:
        if domain and not is_host_name(domain):
            raise ValueError("must be a host name (letters, digits, '-' and '_' in "
                             "dot-separated labels of up to 63), or \"\" for none")
        return domain


class SyncConfig(_Section):
    resync_interval: float = Field(60.0, ge=1, le=86400)
    max_hosts_bytes: int = Field(1 << 20, ge=4096, le=64 << 20)
    retry_interval: float = Field(2.0, gt=0, le=3600)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    output: Literal["auto", "console", "json", "journald"] = "auto"


class DaemonConfig(_Section):
    state_file: AbsolutePath = Path("/run/hostsyncd/state.json")


class MetricsConfig(_Section):
    """Prometheus metrics, as a node_exporter textfile (README: "Metrics")."""

    # "" is off. node_exporter's textfile collector reads only files named *.prom, in the
    # directory given by its --collector.textfile.directory.
    textfile: str = ""
    interval: float = Field(15.0, ge=1, le=3600)

    @field_validator("textfile")
    @classmethod
    def _prom_path(cls, textfile: str) -> str:
        if not textfile:
            return textfile
        path = Path(textfile)
        if not path.is_absolute():
            raise ValueError("must be an absolute path, or \"\" for no metrics")
        if path.suffix != ".prom" or path.name == ".prom":
            raise ValueError("must end in .prom: node_exporter's textfile collector reads "
                             "no other file")
        return textfile


def _host_name() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


class ClusterConfig(_Section):
    """Links across hosts through etcd (README: "Links across hosts")."""

    enabled: bool = False
    endpoints: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:2379"],
                                 min_length=1)
    prefix: str = "/hostsyncd"
    node: str = Field(default_factory=_host_name)
    lease_ttl: int = Field(10, ge=2, le=3600)
    # The network whose address is published; "" means each container's first network.
    advertise_network: str = ""
    publish_label: str = Field("hostsyncd.publish", min_length=1)
    # A bare link name may resolve to another node's record (README: what that risks).
    resolve_bare_names: bool = False
    # Records beyond this many from one node are ignored (and reported once).
    max_records_per_node: int = Field(10_000, ge=1, le=1_000_000)
    timeout: float = Field(5.0, gt=0, le=300)
    ca: AbsolutePath | None = None
    cert: AbsolutePath | None = None
    key: AbsolutePath | None = None
    username: str = ""
    # A SecretStr: repr(), str() and error messages show '**********', not the password.
    password: SecretStr = SecretStr("")
    password_file: AbsolutePath | None = None

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, endpoints: list[str]) -> list[str]:
        for i, url in enumerate(endpoints):
            if "@" in url:
                # The URL is not repeated: it holds a password. An endpoint is logged and
                # shown in the state file, where a password must never be.
                raise ValueError(f"endpoint {i + 1} holds user info ('user:password@'), "
                                 "which would end up in logs and the state file: use "
                                 "username and password_file")
            if not re.fullmatch(r"https?://[^/\s]+/?", url):
                raise ValueError(f"{url!r} is not an http:// or https:// URL of host:port")
            _no_password(url)
        return [url.rstrip("/") for url in endpoints]

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", prefix):
            raise ValueError("must be like /hostsyncd: '/'-separated names, no trailing '/'")
        return prefix

    @field_validator("node")
    @classmethod
    def _node_name(cls, node: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", node) or ".." in node:
            raise ValueError("must be a name of letters, digits, '_', '.' or '-' "
                             "(at most 63), starting with a letter or digit")
        return node

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        password = bool(self.password.get_secret_value())
        if password and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (password or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if self.username:
            clear = [url for url in self.endpoints
                     if url.startswith("http://") and not _is_loopback(url)]
            if clear:
                raise ValueError(f"endpoints: {clear[0]} is plain http:// to a host other "
                                 "than this one, and username would send the password and "
                                 "tokens over it in clear text: use https://")
        return self


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Config(_Section):
    daemon: DaemonConfig = DaemonConfig()
    docker: DockerConfig = DockerConfig()
    links: LinksConfig = LinksConfig()
    sync: SyncConfig = SyncConfig()
    log: LogConfig = LogConfig()
    cluster: ClusterConfig = ClusterConfig()
    metrics: MetricsConfig = MetricsConfig()


def default_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def locate(given: Path | None) -> tuple[Path, bool]:
    """The file to read, and whether it was named: by the command line (`given`), else by
    $HOSTSYNCD_CONFIG. Only a file that was named must exist."""
    if given is not None:
        return given, True
    env = os.environ.get(ENV_VAR)
    return (Path(env), True) if env else (DEFAULT_PATH, False)


def load(path: Path, *, missing_ok: bool = False) -> Config:
    """The config in `path`. With `missing_ok`, a file that does not exist gives the
    defaults (every key has one); any other failure to read it is still an error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        if missing_ok:
            return Config()
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid config:\n" + _describe(exc)) from None


def secret_warnings(path: Path, config: Config) -> list[str]:
    """Files holding a secret that group or others may read (for check-config and the
    daemon's start). A missing or unreadable file is not a warning here: the config load
    or the first login says so."""
    found = []
    cluster = config.cluster
    if cluster.password.get_secret_value():
        found.append((path, "holds cluster.password"))
    if cluster.password_file is not None:
        found.append((cluster.password_file, "is cluster.password_file"))
    out = []
    for file, what in found:
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError:
            continue
        if mode & 0o044:
            out.append(f"{file} {what} and is readable by group or others (mode "
                       f"{mode:04o}): chmod 600 {file}")
    return out


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)
