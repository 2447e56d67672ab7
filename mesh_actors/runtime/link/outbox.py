"""Coalescing: the link messages of one event-loop tick leave in one write."""

from __future__ import annotations

import asyncio

__all__ = ["Outbox"]


class Outbox:
    """Encoded messages waiting for the end of the current event-loop tick, then written at once."""

    __slots__ = ("_loop", "_messages", "_scheduled", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._messages: list[bytes] = []
        self._scheduled = False
        self._transport: asyncio.Transport | None = None

    def attach(self, transport: asyncio.Transport | None) -> None:
        """Write to ``transport`` from now on (None: hold nothing back, write nowhere)."""
        self._transport = transport

    def put(self, message: bytes) -> None:
        """Queue one encoded message for this tick's write."""
        self._messages.append(message)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (messages queued without a transport are dropped)."""
        self._scheduled = False
        messages, self._messages = self._messages, []
        transport = self._transport
        if messages and transport is not None and not transport.is_closing():
            transport.write(b"".join(messages))
