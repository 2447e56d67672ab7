"""Requests awaiting their response, and the ids that correlate the two.

See docs/protocol.md#requests-and-responses.

Ids are opaque to the server, which echoes them verbatim; the only rule is that two requests in
flight never share one. A wrapping counter that skips ids still in use satisfies it. The range
stays below 100 000 000 like the reference client's ids, so no server sees larger numbers from
us than from a stock client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ID_LIMIT", "PendingRequests"]

ID_LIMIT = 100_000_000
"""Request ids are integers in ``[1, ID_LIMIT)``."""


@dataclass(slots=True)
class _Pending:
    command: str
    future: asyncio.Future[Any]
    sent: bool = False


class PendingRequests:
    """The table of open requests: id allocation, resolution by id, bulk failure."""

    def __init__(self, id_limit: int = ID_LIMIT) -> None:
        if id_limit < 2:
            raise ValueError("id_limit must be >= 2")
        self._limit = id_limit
        self._last = 0
        self._open: dict[int, _Pending] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._open

    def next_id(self) -> int:
        """A fresh id not used by any open request.

        Also used for frames that expect no answer (``pong``, ``latency:response``): they are
        never registered, so they need no slot in the table.
        """
        if len(self._open) >= self._limit - 1:
            raise RuntimeError("every request id is in use")
        while True:
            self._last = self._last % (self._limit - 1) + 1
            if self._last not in self._open:
                return self._last

    def open(self, command: str) -> tuple[int, asyncio.Future[Any]]:
        """Register a request for ``command``; returns its id and the future of its response."""
        request_id = self.next_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._open[request_id] = _Pending(command, future)
        return request_id, future

    def mark_sent(self, request_id: int) -> None:
        """Record that the request is on the wire (so a lost connection fails it)."""
        pending = self._open.get(request_id)
        if pending is not None:
            pending.sent = True

    def resolve(self, request_id: Any, payload: Any) -> bool:
        """Complete the request with this id; ``False`` if no such request is open (late
        response after a timeout, or an id we never issued)."""
        if type(request_id) is not int:  # unhashable or foreign ids cannot be ours
            return False
        pending = self._open.get(request_id)
        if pending is None or pending.future.done():
            return False
        pending.future.set_result(payload)
        return True

    def close(self, request_id: int) -> None:
        """Forget a request (its caller got a result, an error, or gave up)."""
        self._open.pop(request_id, None)

    def fail_sent(self, error: Callable[[str], BaseException]) -> None:
        """Fail every request already sent: after the connection is lost its response can never
        arrive, and resending could run a non-idempotent command twice. ``error(command)`` builds
        each exception."""
        for pending in self._open.values():
            if pending.sent and not pending.future.done():
                pending.future.set_exception(error(pending.command))

    def fail_all(self, error: Callable[[str], BaseException]) -> None:
        """Fail every open request, sent or not."""
        for pending in self._open.values():
            if not pending.future.done():
                pending.future.set_exception(error(pending.command))
