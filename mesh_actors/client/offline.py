"""The offline queue: commands issued while the connection is being (re)established.

The reference queue is unbounded and only purged when a reconnection succeeds, so a long outage
grows memory without limit and callers learn nothing until their own timeout. This one is bounded
(a full queue refuses new commands at once) and every entry has its own expiry timer, so a command
fails with a timeout as soon as it has waited too long, whether or not the connection comes back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import MeshConnectionError, MeshTimeoutError

__all__ = ["OfflineQueue", "QueuedCommand"]


@dataclass(slots=True, eq=False)
class QueuedCommand:
    """An encoded request frame waiting for a connection."""

    request_id: int
    command: str
    frame: bytes
    future: asyncio.Future[Any]
    deadline: float
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class OfflineQueue:
    """A bounded FIFO of :class:`QueuedCommand`, each expiring ``expiry`` seconds after it was
    queued (its future then fails with :class:`MeshTimeoutError`)."""

    def __init__(self, maxsize: int, expiry: float) -> None:
        self.maxsize = maxsize
        self.expiry = expiry
        self._entries: OrderedDict[int, QueuedCommand] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._entries

    def push(self, request_id: int, command: str, frame: bytes, future: asyncio.Future[Any]) -> None:
        """Queue a frame; raise :class:`MeshConnectionError` if the queue is full."""
        if len(self._entries) >= self.maxsize:
            raise MeshConnectionError(
                f'Not connected and the offline queue is full ({self.maxsize} commands); "{command}" '
                "was not queued."
            )
        loop = asyncio.get_running_loop()
        entry = QueuedCommand(request_id, command, frame, future, loop.time() + self.expiry)
        self._entries[request_id] = entry
        self._arm(entry)

    def pop(self) -> QueuedCommand | None:
        """Remove and return the oldest entry, or ``None`` if the queue is empty."""
        if not self._entries:
            return None
        _, entry = self._entries.popitem(last=False)
        self._disarm(entry)
        return entry

    def requeue(self, entry: QueuedCommand) -> None:
        """Put back an entry that :meth:`pop` returned but could not be sent, at the front, with
        its original deadline. Never refused: it already held a slot."""
        self._entries[entry.request_id] = entry
        self._entries.move_to_end(entry.request_id, last=False)
        self._arm(entry)

    def discard(self, request_id: int) -> None:
        """Drop an entry whose caller no longer waits (it timed out or was cancelled)."""
        entry = self._entries.pop(request_id, None)
        if entry is not None:
            self._disarm(entry)

    def fail_all(self, error: Callable[[str], BaseException]) -> None:
        """Empty the queue, failing every entry with ``error(command)`` (nothing will send them)."""
        while (entry := self.pop()) is not None:
            if not entry.future.done():
                entry.future.set_exception(error(entry.command))

    def _arm(self, entry: QueuedCommand) -> None:
        entry._timer = asyncio.get_running_loop().call_at(entry.deadline, self._expire, entry)

    @staticmethod
    def _disarm(entry: QueuedCommand) -> None:
        if entry._timer is not None:
            entry._timer.cancel()
            entry._timer = None

    def _expire(self, entry: QueuedCommand) -> None:
        if self._entries.get(entry.request_id) is not entry:
            return
        del self._entries[entry.request_id]
        entry._timer = None
        if not entry.future.done():
            entry.future.set_exception(
                MeshTimeoutError(
                    f'Command "{entry.command}" expired in the offline queue after {self.expiry:g} s.'
                )
            )
