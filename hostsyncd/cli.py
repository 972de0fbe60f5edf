"""Command line: argument parsing and exit codes. The work happens elsewhere.

Imports: cluster, config, core, daemon, engine, log, state, views.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hostsyncd import __version__
from hostsyncd import log as hlog
from hostsyncd.config import (
    Config,
    ConfigError,
    ConfigUnreadable,
    load,
    locate,
    secret_warnings,
)

EXIT_CONFIG = 2
EXIT_ENGINE = 3
EXIT_WRITES = 4
EXIT_NOT_RUNNING = 5
EXIT_CLUSTER = 6

CONFIG_HELP = ("config file (default: $HOSTSYNCD_CONFIG, else /etc/hostsyncd/config.toml, "
               "else the defaults)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostsyncd",
        description="Keep containers' /etc/hosts in sync with links declared in labels.",
    )
    parser.add_argument("--version", action="version", version=f"hostsyncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "run": "run the daemon in the foreground",
        "sync": "one full reconcile, then exit (non-zero if a write failed)",
        "graph": "print the live link graph read from the engine",
        "status": "show what the running daemon knows (from its state file)",
    }
    for name, help_text in commands.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    sub.choices["graph"].add_argument("--format", choices=("text", "dot", "json"),
                                      default="text")
    sub.choices["status"].add_argument("--json", action="store_true", help="raw state as JSON")
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, nargs="?", default=None, help=CONFIG_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path, named = locate(getattr(args, "config", None) or getattr(args, "file", None))
    # Every key has a default, so no file at the default path means the defaults. A file
    # that was named (--config, $HOSTSYNCD_CONFIG) and is missing is a mistake to report.
    try:
        config = load(path, missing_ok=not named)
    except ConfigUnreadable as exc:
        # `status` only needs the state file's path, and anyone may read that file: a user
        # who may not read the config (it can hold etcd credentials) gets the default one.
        if args.command != "status" or named:
            print(f"hostsyncd: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return _status(Config(), args.json, note=f"{exc}; used the default state_file")
    except ConfigError as exc:
        print(f"hostsyncd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        for warning in secret_warnings(path, config):
            print(f"hostsyncd: warning: {warning}", file=sys.stderr)
        print(f"{path}: OK" if named or path.exists() else
              f"{path}: no such file; every key has its default")
        return 0
    if args.command == "status":
        return _status(config, args.json)
    hlog.configure(config.log.level, config.log.output)
    if args.command == "sync":
        return _sync(config)
    if args.command == "graph":
        return _graph(config, args.format)
    from hostsyncd.daemon import Daemon

    for warning in secret_warnings(path, config):
        hlog.get_logger().warning("secret readable by group or others", problem=warning)
    return Daemon(config, reload_config=lambda: load(path, missing_ok=not named)).run()


def _sync(config: Config) -> int:
    from hostsyncd.cluster import EtcdError
    from hostsyncd.daemon import run_once
    from hostsyncd.engine import EngineUnavailable

    log = hlog.get_logger()
    try:
        written, failed = run_once(config)
    except EngineUnavailable as exc:
        log.error("engine unreachable", engine=config.docker.url, error=str(exc))
        return EXIT_ENGINE
    except EtcdError as exc:
        log.error("etcd unreachable; nothing written", endpoints=config.cluster.endpoints,
                  error=str(exc))
        return EXIT_CLUSTER
    log.info("sync done", written=written, failed=len(failed))
    return EXIT_WRITES if failed else 0


def _graph(config: Config, fmt: str) -> int:
    from hostsyncd import views
    from hostsyncd.cluster import EtcdError, read_remote
    from hostsyncd.core.graph import Snapshot, plan_all
    from hostsyncd.engine import Engine, EngineUnavailable

    engine = Engine(config.docker.url, config.docker.api_timeout)
    try:
        local = engine.list_containers()
    except EngineUnavailable as exc:
        print(f"hostsyncd: engine unreachable at {config.docker.url}: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    finally:
        engine.close()
    cluster = config.cluster
    try:
        snapshot = Snapshot(local, read_remote(cluster), cluster.node,
                            cluster.resolve_bare_names) if cluster.enabled \
            else Snapshot(local)
    except EtcdError as exc:
        print(f"hostsyncd: etcd unreachable: {exc}", file=sys.stderr)
        return EXIT_CLUSTER
    plans = plan_all(snapshot, config.links.label, live_only=False,
                     health=config.links.health, domain=config.links.domain).values()
    render = {"text": views.graph_text, "dot": views.graph_dot, "json": views.graph_json}[fmt]
    sys.stdout.write(render(plans))
    return 0


def _status(config: Config, raw: bool, note: str = "") -> int:
    from hostsyncd import state, views

    try:
        data = state.read(config.daemon.state_file)
    except (OSError, ValueError) as exc:
        print(f"hostsyncd: no state from a running daemon at {config.daemon.state_file}: {exc}",
              file=sys.stderr)
        if note:  # the config named another state_file, perhaps
            print(f"hostsyncd: ({note})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if not _alive(int(data.get("pid", 0))):
        print(f"hostsyncd: the daemon that wrote {config.daemon.state_file} "
              f"(pid {data.get('pid')}) is not running; showing its last state", file=sys.stderr)
    sys.stdout.write(json.dumps(data, indent=1) + "\n" if raw else views.status_text(data))
    return 0


def _alive(pid: int) -> bool:
    import os

    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    sys.exit(main())
