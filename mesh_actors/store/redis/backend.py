"""What every Redis storage adapter of a process shares: one client, the key layout, the timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from .keys import KeyLayout
from .writer import OrderedWriter

__all__ = ["RedisBackend", "glob_escape", "text"]


@dataclass(frozen=True, eq=False)
class RedisBackend:
    """The Redis of a deployment as this process reaches it.

    Each shard's adapter gets its own :class:`OrderedWriter` (:meth:`writer`): one shard's writes
    reach Redis in the order it made them, in one pipeline per event-loop tick.
    """

    redis: Redis
    keys: KeyLayout
    persist_timeout: float = 5.0

    def writer(self) -> OrderedWriter:
        """A new ordered writer over this client."""
        return OrderedWriter(self.redis, persist_timeout=self.persist_timeout)


def text(value: bytes | str) -> str:
    """A key or member read from Redis as ``str`` (the client returns ``bytes``)."""
    return value.decode() if isinstance(value, bytes) else value


def glob_escape(pattern: str) -> str:
    """Escape the glob characters of a SCAN pattern's literal part, keeping its trailing ``*``."""
    head = pattern[:-1]
    for char in "\\*?[]":
        head = head.replace(char, "\\" + char)
    return head + "*"
