"""Pattern-matched guards: the first registered pattern that matches a name decides.

See docs/protocol.md#guards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from .calls import call_user

__all__ = ["Guard", "GuardTable", "Pattern"]

logger = logging.getLogger(__name__)

Pattern = str | re.Pattern[str]
Guard = Callable[[Any, str], bool | Awaitable[bool]]


def _matches(pattern: Pattern, name: str) -> bool:
    if isinstance(pattern, str):
        return pattern == name  # strings match exactly, as in the reference ("chat:*" is literal)
    return pattern.search(name) is not None


class GuardTable:
    """Ordered ``(pattern, guard)`` pairs; an equal string pattern replaces its guard."""

    def __init__(self) -> None:
        self._entries: list[tuple[Pattern, Guard | None]] = []

    def add(self, pattern: Pattern, guard: Guard | None = None) -> None:
        """Register ``pattern`` with an optional guard ``(connection, name) -> bool``."""
        for index, (existing, _) in enumerate(self._entries):
            if existing == pattern:
                self._entries[index] = (pattern, guard)
                return
        self._entries.append((pattern, guard))

    def match(self, name: str) -> tuple[Pattern, Guard | None] | None:
        """The first entry whose pattern matches ``name``."""
        for entry in self._entries:
            if _matches(entry[0], name):
                return entry
        return None

    async def allows(self, connection: Any, name: str, *, default: bool) -> bool:
        """Whether ``connection`` may use ``name``: ``default`` if no pattern matches; a guard
        that raises counts as a refusal."""
        entry = self.match(name)
        if entry is None:
            return default
        guard = entry[1]
        if guard is None:
            return True
        try:
            verdict = await call_user(guard, connection, name)
        except Exception:
            logger.exception("guard for %r raised; refusing", name)
            return False
        return bool(verdict)

    def guards(self) -> list[Guard]:
        """Every registered guard function."""
        return [guard for _, guard in self._entries if guard is not None]

    def __len__(self) -> int:
        return len(self._entries)
