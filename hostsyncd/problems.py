"""Say each problem once: when it appears, and again only after it has gone and come back."""

from __future__ import annotations

from typing import Any


class ProblemLog:
    def __init__(self, log: Any) -> None:
        self._log = log
        self._active: dict[str, dict[str, str]] = {}

    def set(
        self,
        subject: str,
        current: dict[str, str],
        level: str = "warning",
        **fields: Any,
    ) -> None:
        """Replace the subject's problems (key -> message), logging only the new ones."""
        before = self._active.get(subject, {})
        for key, message in current.items():
            if before.get(key) != message:
                getattr(self._log, level)(message, **fields)
        for key in before.keys() - current.keys():
            self._log.info("problem resolved", problem=before[key], **fields)
        if current:
            self._active[subject] = dict(current)
        else:
            self._active.pop(subject, None)

    def add(self, subject: str, key: str, message: str, level: str = "warning",
            **fields: Any) -> None:
        """One more problem for the subject, leaving its others as they are."""
        current = self._active.get(subject, {})
        if current.get(key) != message:
            getattr(self._log, level)(message, **fields)
            self._active.setdefault(subject, {})[key] = message

    def clear(self, subject: str, key: str, **fields: Any) -> None:
        message = self._active.get(subject, {}).pop(key, None)
        if message is not None:
            self._log.info("problem resolved", problem=message, **fields)

    def forget(self, subject: str) -> None:
        self._active.pop(subject, None)

    def active(self) -> dict[str, dict[str, str]]:
        return {subject: dict(found) for subject, found in self._active.items()}
