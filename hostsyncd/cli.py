"""Command line: argument parsing and exit codes. The work happens elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hostsyncd import __version__
from hostsyncd import logging as hlog
from hostsyncd.config import Config, ConfigError, default_path, load

EXIT_CONFIG = 2
EXIT_ENGINE = 3
EXIT_WRITES = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostsyncd",
        description="Keep containers' /etc/hosts in sync with links declared in labels.",
    )
    parser.add_argument("--version", action="version", version=f"hostsyncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "config file (default: $HOSTSYNCD_CONFIG, else /etc/hostsyncd/config.toml)"
    for name, help_text in (
        ("run", "run the daemon in the foreground"),
        ("sync", "one full reconcile, then exit (non-zero if a write failed)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--config", type=Path, default=None, help=config_help)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, nargs="?", default=None)
    return parser


def _load(path: Path | None) -> Config:
    return load(path or default_path())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = getattr(args, "config", None) or getattr(args, "file", None)
    try:
        config = _load(path)
    except ConfigError as exc:
        print(f"hostsyncd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{path or default_path()}: OK")
        return 0
    hlog.configure(config.log.level, config.log.output)
    if args.command == "sync":
        return _sync(config)
    from hostsyncd.daemon import Daemon

    return Daemon(config, reload_config=lambda: _load(path)).run()


def _sync(config: Config) -> int:
    from hostsyncd.daemon import run_once
    from hostsyncd.engine import EngineUnavailable

    log = hlog.get_logger()
    try:
        written, failed = run_once(config)
    except EngineUnavailable as exc:
        log.error("engine unreachable", engine=config.docker.url, error=str(exc))
        return EXIT_ENGINE
    log.info("sync done", written=written, failed=len(failed))
    return EXIT_WRITES if failed else 0


if __name__ == "__main__":
    sys.exit(main())
