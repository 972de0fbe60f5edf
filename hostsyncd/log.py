"""One structlog pipeline for the whole daemon, rendered for the console, as JSON lines, or
as native journald entries.

Imports: structlog, systemd.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
# syslog priorities, as journald wants them
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
_NOT_A_FIELD = re.compile(r"[^A-Z0-9_]")
IDENTIFIER = "hostsyncd"


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
    journal = _journal_module() if chosen == "journald" else None
    if chosen == "journald" and journal is None:
        chosen = "console"  # systemd-python missing: still log, and say so below
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Any = structlog.PrintLoggerFactory(file=stream)
    if chosen == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    elif chosen == "journald":
        processors += [structlog.processors.format_exc_info, journald_fields]
        factory = lambda *_: JournalLogger(journal)  # noqa: E731
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        # Not cached: a logger handed out before a reload (SIGHUP) follows the new level.
        cache_logger_on_first_use=False,
    )
    if output == "journald" and chosen != "journald":
        get_logger().warning("systemd-python is not installed; logging to the console")
    return chosen


def get_logger(name: str = IDENTIFIER) -> Any:
    return structlog.get_logger(name)


def journald_fields(_: Any, method: str, event: dict[str, Any]) -> dict[str, str]:
    """The final processor for journald: upper-case field names, which is all journald keeps
    (it silently drops names with lower-case letters), and a readable MESSAGE."""
    level = str(event.pop("level", method))
    event.pop("timestamp", None)  # journald stamps entries itself
    message = str(event.pop("event", ""))
    exception = event.pop("exception", None)
    fields = {
        "PRIORITY": str(_PRIORITY.get(level, 6)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
    }
    shown = []
    for key, value in event.items():
        name = _NOT_A_FIELD.sub("_", key.upper()).lstrip("_") or "FIELD"
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        fields[name] = text
        if key != "container_id":
            shown.append(f"{key}={text}")
    fields["MESSAGE"] = " ".join([message, *shown])
    if exception:
        fields["EXCEPTION"] = str(exception)
        fields["MESSAGE"] += "\n" + str(exception)
    return fields


class JournalLogger:
    """Sends each entry with systemd.journal.send; one entry per event, exception included."""

    def __init__(self, journal: Any) -> None:
        self._send = journal.send

    def _log(self, **fields: str) -> None:
        message = fields.pop("MESSAGE", "")
        self._send(message, **fields)

    debug = info = warning = warn = error = critical = exception = msg = _log


def _journal_module() -> Any:
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal
