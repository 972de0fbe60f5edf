"""One structlog pipeline for the whole daemon: console, JSON lines, or journald."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def resolve_output(output: str, stream: TextIO = sys.stderr) -> str:
    """`auto`: journald under systemd, a console on a TTY, JSON lines otherwise."""
    if output != "auto":
        return output
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        return "journald"
    return "console" if stream.isatty() else "json"


def configure(level: str = "info", output: str = "auto", stream: TextIO = sys.stderr) -> str:
    """Set up structlog; returns the output actually used."""
    chosen = resolve_output(output, stream)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if chosen == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # journald gets native entries once the service work lands; until then the console.
        renderer = [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    return chosen


def get_logger(name: str = "hostsyncd") -> Any:
    return structlog.get_logger(name)
