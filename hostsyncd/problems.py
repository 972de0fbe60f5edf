"""Say each problem once: when it appears, and again only after it has gone and come back.

Imports: nothing.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

RECENT = 20


class ProblemLog:
    def __init__(self, log: Any) -> None:
        self.log = log
        self._active: dict[str, dict[str, str]] = {}
        # Subjects said at info level (routine, like links waiting for a stopped target):
        # not problems to count.
        self._routine: set[str] = set()
        # The last warnings and errors, for `hostsyncd status`.
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def set(self, subject: str, current: dict[str, str], level: str = "warning",
            **fields: Any) -> None:
        """Replace the subject's problems (key -> message), logging only the new ones."""
        before = self._active.get(subject, {})
        for key, message in current.items():
            if before.get(key) != message:
                self._say(level, message, fields)
        for key in before.keys() - current.keys():
            self.log.info("problem resolved", problem=before[key], **fields)
        if current:
            self._active[subject] = dict(current)
        else:
            self._active.pop(subject, None)
        self._level(subject, level)

    def add(self, subject: str, key: str, message: str, level: str = "warning",
            **fields: Any) -> None:
        """One more problem for the subject, leaving its others as they are."""
        current = self._active.get(subject, {})
        if current.get(key) != message:
            self._say(level, message, fields)
            self._active.setdefault(subject, {})[key] = message
            self._level(subject, level)

    def clear(self, subject: str, key: str, **fields: Any) -> None:
        message = self._active.get(subject, {}).pop(key, None)
        if message is not None:
            self.log.info("problem resolved", problem=message, **fields)

    def forget(self, subject: str) -> None:
        self._active.pop(subject, None)
        self._routine.discard(subject)

    def _level(self, subject: str, level: str) -> None:
        if level in ("warning", "error") or subject not in self._active:
            self._routine.discard(subject)
        else:
            self._routine.add(subject)

    def counts(self) -> Counter[str]:
        """The warnings and errors open now, by kind: a subject's part after the container
        id it is about ("<id>/file" -> "file"), else its first part ("cluster/records" ->
        "cluster"). Never a name: only what the code wrote as a subject."""
        out: Counter[str] = Counter()
        for subject, problems in self._active.items():
            if subject not in self._routine:
                head, _, tail = subject.partition("/")
                out[tail.partition("/")[0] if len(head) == 64 and tail else head] += \
                    len(problems)
        return out

    def subjects(self) -> set[str]:
        """The containers (by id) that some problem is about now."""
        return {s.partition("/")[0] for s in self._active if len(s.partition("/")[0]) == 64}

    def note_error(self, message: str, **fields: Any) -> None:
        """Remember an error that was logged elsewhere."""
        self.recent.append({"at": time.time(), "level": "error", "message": message, **fields})

    def _say(self, level: str, message: str, fields: dict[str, Any]) -> None:
        getattr(self.log, level)(message, **fields)
        if level in ("warning", "error"):
            self.recent.append({"at": time.time(), "level": level, "message": message,
                                "container": fields.get("container_name", "")})
